"""The compiled part of vw: vw-turn's media relay loop (metadata is in setup.cfg).

The extension is optional: without a C compiler vw installs all the same, and vw-turn relays
every datagram in Python (see vw/turn/leases.py)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("vw.turn._channelrelay", ["vw/turn/_channelrelay.c"],
                             extra_compile_args=["-O2", "-Wall", "-Wextra"],
                             optional=True)])
