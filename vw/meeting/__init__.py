"""The meeting page: ``/ROOM`` joins a conference through lib-jitsi-meet in the browser.

The browser libraries come from npm, pinned in ``package-lock.json``:
``npm ci --prefix vw/meeting`` installs them under ``vw/meeting/node_modules``.
lib-jitsi-meet's published package names two of its dependencies by GitHub commit; only its
prebuilt bundle is served, so ``package.json`` overrides those two with registry releases.
"""
