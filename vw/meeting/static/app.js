/* vw's meeting page: joins one room through lib-jitsi-meet and shows everyone in a grid. */
'use strict';

(() => {
    const settings = JSON.parse(document.getElementById('vw-config').textContent);
    const JitsiMeetJS = window.JitsiMeetJS;
    const events = JitsiMeetJS.events;
    const errors = JitsiMeetJS.errors;

    const grid = document.getElementById('grid');
    const statusLine = document.getElementById('status');
    const localVideo = document.getElementById('local-video');
    const audioBox = document.getElementById('remote-audio');
    const buttons = {
        audio: document.getElementById('mute-audio'),
        video: document.getElementById('mute-video'),
        lobby: document.getElementById('lobby-toggle'),
        leave: document.getElementById('leave')
    };
    const knockForm = document.getElementById('knock');
    const knockName = document.getElementById('knock-name');
    const lobbyPanel = document.getElementById('lobby');
    const lobbyList = document.getElementById('lobby-waiting');
    const LABELS = {
        audio: ['Mute audio', 'Unmute audio'],
        video: ['Stop video', 'Start video']
    };
    /** Plain words for the failures a guest can do something about. */
    const REASONS = {
        [errors.connection.PASSWORD_REQUIRED]: 'the server wants you to sign in',
        [errors.connection.CONNECTION_DROPPED_ERROR]: 'the connection dropped',
        [errors.connection.SERVER_ERROR]: 'the server failed',
        [errors.conference.AUTHENTICATION_REQUIRED]: 'this room needs an authenticated host',
        [errors.conference.CONFERENCE_ACCESS_DENIED]: 'access to the room was refused',
        [errors.conference.MEMBERS_ONLY_ERROR]: 'the room is for members only',
        [errors.conference.NOT_ALLOWED_ERROR]: 'the room refused you',
        [errors.conference.PASSWORD_REQUIRED]: 'the room has a password',
        [errors.conference.CONFERENCE_MAX_USERS]: 'the room is full',
        [errors.conference.RESERVATION_ERROR]: 'the conference was refused',
        [errors.conference.CONFERENCE_DESTROYED]: 'the meeting was ended',
        [errors.conference.FOCUS_LEFT]: 'the conference focus left',
        [errors.conference.FOCUS_DISCONNECTED]: 'the conference focus is unreachable',
        [errors.conference.VIDEOBRIDGE_NOT_AVAILABLE]: 'no video bridge is available',
        [errors.conference.ICE_FAILED]: 'media could not reach the bridge'
    };

    let state = 'connecting';
    let notice = '';
    let connection = null;
    let conference = null;
    let localTracks = [];
    /** Remote video tiles by participant id: {figure, video, track}. */
    const tiles = new Map();
    /** Remote audio elements by JitsiRemoteTrack. */
    const audioElements = new Map();
    /** Those knocking in the lobby (seen by moderators), by lobby id: {item, name}. */
    const waiting = new Map();

    function showStatus() {
        const reason = state.startsWith('failed: ') ? REASONS[state.slice(8).split(' ')[0]] : '';
        const parts = [state, reason, notice].filter(Boolean);

        statusLine.textContent = parts.join(' · ');
        statusLine.dataset.state = state.split(':')[0];
    }

    function setState(value) {
        state = value;
        showStatus();
    }

    function setNotice(text) {
        notice = text;
        showStatus();
    }

    /** The first failure wins; everything is released. */
    function fail(reason) {
        if (state === 'left' || state.startsWith('failed: ')) {
            return;
        }
        setState(`failed: ${reason}`);
        release();
    }

    function release() {
        Object.values(buttons).forEach(button => {
            button.disabled = true;
        });
        const closing = conference ? conference.leave().catch(() => undefined) : Promise.resolve();

        conference = null;
        closing.then(() => {
            if (connection) {
                connection.disconnect();
                connection = null;
            }
        });
        localTracks.forEach(track => track.dispose());
        localTracks = [];
        [...tiles.keys()].forEach(removeTile);
        [...audioElements.keys()].forEach(removeAudio);
        [...waiting.keys()].forEach(onLobbyUserLeft);
        knockForm.hidden = true;
    }

    function serviceUrl() {
        const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';

        return `${scheme}//${location.host}/xmpp-websocket?room=${encodeURIComponent(settings.room)}`;
    }

    async function createLocalTracks() {
        try {
            return await JitsiMeetJS.createLocalTracks({ devices: [ 'audio', 'video' ] });
        } catch (error) {
            setNotice(`joining without camera and microphone (${error.name || error})`);

            return [];
        }
    }

    function localTrack(kind) {
        return localTracks.find(track => track.getType() === kind);
    }

    function localMuted(kind) {
        const track = localTrack(kind);

        return Boolean(track && track.isMuted());
    }

    /** The mute buttons and the local tile follow the local tracks. */
    function showLocalState() {
        for (const kind of [ 'audio', 'video' ]) {
            const muted = localMuted(kind);

            buttons[kind].disabled = !localTrack(kind) || state !== 'joined';
            buttons[kind].textContent = LABELS[kind][muted ? 1 : 0];
            buttons[kind].setAttribute('aria-pressed', String(muted));
        }
        localVideo.parentElement.classList.toggle('muted', localMuted('video'));
    }

    async function toggle(kind) {
        const track = localTrack(kind);

        buttons[kind].disabled = true;
        try {
            await (track.isMuted() ? track.unmute() : track.mute());
        } catch (error) {
            setNotice(`could not change the ${kind}: ${error.name || error}`);
        }
        showLocalState();
    }

    function tileFor(participantId) {
        let tile = tiles.get(participantId);

        if (!tile) {
            const figure = document.createElement('figure');
            const video = document.createElement('video');
            const caption = document.createElement('figcaption');
            const participant = conference && conference.getParticipantById(participantId);

            figure.className = 'tile remote';
            figure.dataset.participant = participantId;
            video.autoplay = true;
            video.playsInline = true;
            video.muted = true;
            caption.textContent = (participant && participant.getDisplayName()) || participantId;
            figure.append(video, caption);
            grid.append(figure);
            tile = { figure, video, track: null };
            tiles.set(participantId, tile);
        }

        return tile;
    }

    function removeTile(participantId) {
        const tile = tiles.get(participantId);

        if (tile) {
            if (tile.track) {
                tile.track.detach(tile.video);
            }
            tile.figure.remove();
            tiles.delete(participantId);
        }
    }

    function removeAudio(track) {
        const element = audioElements.get(track);

        if (element) {
            track.detach(element);
            element.remove();
            audioElements.delete(track);
        }
    }

    function onTrackAdded(track) {
        if (track.isLocal()) {
            return;
        }
        if (track.getType() === 'audio') {
            const element = document.createElement('audio');

            element.autoplay = true;
            audioBox.append(element);
            audioElements.set(track, element);
            track.attach(element);

            return;
        }
        const tile = tileFor(track.getParticipantId());

        if (tile.track && tile.track !== track) {
            tile.track.detach(tile.video);
        }
        tile.track = track;
        track.attach(tile.video);
        tile.figure.classList.toggle('muted', track.isMuted());
    }

    function onTrackRemoved(track) {
        if (track.isLocal()) {
            return;
        }
        if (track.getType() === 'audio') {
            removeAudio(track);
        } else {
            const tile = tiles.get(track.getParticipantId());

            if (tile && tile.track === track) {
                removeTile(track.getParticipantId());
            }
        }
    }

    function onTrackMuteChanged(track) {
        if (track.isLocal()) {
            showLocalState();
        } else if (track.getType() === 'video') {
            const tile = tiles.get(track.getParticipantId());

            if (tile && tile.track === track) {
                tile.figure.classList.toggle('muted', track.isMuted());
            }
        }
    }

    function onUserLeft(participantId) {
        removeTile(participantId);
        [...audioElements.keys()]
            .filter(track => track.getParticipantId() === participantId)
            .forEach(removeAudio);
    }

    /** ``?relay=true`` sends media only through the TURN servers of XEP-0215 (lib-jitsi-meet
     * keeps those over TCP or TLS for the bridge): ICE transport policy "relay". */
    function forceTurnRelay() {
        return new URLSearchParams(location.search).get('relay') === 'true';
    }

    /** The display name the join token carries, if any. */
    function tokenName() {
        const token = new URLSearchParams(location.search).get('jwt') || '';

        try {
            const base64 = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
            const bytes = Uint8Array.from(atob(base64), ch => ch.charCodeAt(0));
            const claims = JSON.parse(new TextDecoder().decode(bytes));

            return (claims.context && claims.context.user && claims.context.user.name) || '';
        } catch (error) {
            return '';
        }
    }

    /** A members-only room with a lobby asks for a name to knock with; any other failure
     * ends the meeting. */
    function onConferenceFailed(error) {
        if (error === errors.conference.MEMBERS_ONLY_ERROR && state === 'connecting'
                && conference && conference.isLobbySupported()) {
            setState('in the lobby');
            knockName.value = knockName.value || tokenName();
            knockForm.hidden = false;
            knockName.focus();

            return;
        }
        fail(error);
    }

    /** Knock: wait in the lobby until a moderator admits (the library then joins the room)
     * or denies (the conference fails with access denied). */
    async function knock(name) {
        knockForm.hidden = true;
        setState('waiting for a moderator');
        try {
            await conference.joinLobby(name);
        } catch (error) {
            fail(`lobby: ${error.message || error}`);
        }
    }

    function lobbyButton(label, action) {
        const button = document.createElement('button');

        button.type = 'button';
        button.textContent = label;
        button.addEventListener('click', action);

        return button;
    }

    function onLobbyUserJoined(id, name) {
        if (waiting.has(id)) {
            return;
        }
        const item = document.createElement('li');
        const label = document.createElement('span');

        label.textContent = name || id;
        item.dataset.id = id;
        item.append(label,
            lobbyButton('Admit', () => conference.lobbyApproveAccess(id)),
            lobbyButton('Deny', () => conference.lobbyDenyAccess(id)));
        lobbyList.append(item);
        waiting.set(id, { item, name });
        lobbyPanel.hidden = false;
    }

    function onLobbyUserLeft(id) {
        const entry = waiting.get(id);

        if (entry) {
            entry.item.remove();
            waiting.delete(id);
        }
        lobbyPanel.hidden = waiting.size === 0;
    }

    /** Moderators may turn the lobby on and off. */
    function showLobbyToggle() {
        const moderator = Boolean(conference) && state === 'joined' && conference.isModerator()
            && conference.isLobbySupported();
        const on = Boolean(conference) && conference.isMembersOnly();

        buttons.lobby.hidden = !moderator;
        buttons.lobby.textContent = on ? 'Turn the lobby off' : 'Turn the lobby on';
        buttons.lobby.setAttribute('aria-pressed', String(on));
    }

    async function setLobby(on) {
        buttons.lobby.disabled = true;
        try {
            await (on ? conference.enableLobby() : conference.disableLobby());
        } catch (error) {
            setNotice(`could not change the lobby: ${error.message || error}`);
        }
        buttons.lobby.disabled = false;
        showLobbyToggle();
    }

    /** The focus refusing the conference (a token for another room): lib-jitsi-meet gets
     * the answer but this build does not report it, so the page watches for it itself. */
    function watchRefusals() {
        const xmpp = connection.xmpp && connection.xmpp.connection;

        xmpp && xmpp.addHandler(iq => {
            const refusal = iq.querySelector('error > reservation-error');

            if (refusal) {
                const text = iq.querySelector('error > text');

                fail(`${errors.conference.RESERVATION_ERROR} ${text ? text.textContent : ''}`);
            }

            return true;
        }, 'http://jitsi.org/protocol/focus', 'iq', 'error');
    }

    function onConnected() {
        const c = events.conference;

        watchRefusals();
        conference = connection.initJitsiConference(settings.room, {
            openBridgeChannel: 'websocket',

            // Media always goes through the bridge, also between two people.
            p2p: { enabled: false },
            forceTurnRelay: forceTurnRelay()
        });
        conference.on(c.CONFERENCE_JOINED, () => {
            setState('joined');
            showLocalState();
            showLobbyToggle();
        });
        conference.on(c.CONFERENCE_FAILED, onConferenceFailed);
        conference.on(c.USER_ROLE_CHANGED, showLobbyToggle);
        conference.on(c.MEMBERS_ONLY_CHANGED, showLobbyToggle);
        conference.on(c.LOBBY_USER_JOINED, onLobbyUserJoined);
        conference.on(c.LOBBY_USER_LEFT, onLobbyUserLeft);
        conference.on(c.CONFERENCE_ERROR, error => setNotice(REASONS[error] || error));
        conference.on(c.KICKED, () => fail('kicked'));
        conference.on(c.TRACK_ADDED, onTrackAdded);
        conference.on(c.TRACK_REMOVED, onTrackRemoved);
        conference.on(c.TRACK_MUTE_CHANGED, onTrackMuteChanged);
        conference.on(c.USER_LEFT, onUserLeft);
        Promise.all(localTracks.map(track => conference.addTrack(track)))
            .then(() => conference && conference.join())
            .catch(error => fail(`media: ${error.name || error}`));
    }

    function connect(token) {
        const c = events.connection;

        connection = new JitsiMeetJS.JitsiConnection(null, token, {
            hosts: { domain: settings.domain, muc: settings.muc, focus: settings.focus },
            serviceUrl: serviceUrl()
        });
        connection.addEventListener(c.CONNECTION_ESTABLISHED, onConnected);
        connection.addEventListener(c.CONNECTION_FAILED, (error, message) =>
            fail(message ? `${error} ${message}` : error));
        connection.addEventListener(c.CONNECTION_DISCONNECTED, () => fail('disconnected'));
        connection.connect();
    }

    function leave() {
        if (state !== 'left' && !state.startsWith('failed: ')) {
            setState('left');
            release();
        }
    }

    /** The browser's RTCPeerConnection to the bridge, once there is one. */
    function bridgePeerConnection() {
        const session = conference && conference.jvbJingleSession;

        return (session && session.peerconnection && session.peerconnection.peerconnection) || null;
    }

    /** The ICE candidate pair media to the bridge uses: each side's type, protocol, address,
     * port, and for a relay candidate how the TURN server is reached (udp, tcp or tls). */
    async function candidatePair() {
        const pc = bridgePeerConnection();

        if (!pc) {
            return null;
        }
        const reports = new Map();

        (await pc.getStats()).forEach(report => reports.set(report.id, report));
        const transport = [...reports.values()].find(r => r.type === 'transport');
        const pair = reports.get(transport && transport.selectedCandidatePairId);

        if (!pair) {
            return null;
        }
        const candidate = id => {
            const c = reports.get(id) || {};

            return {
                type: c.candidateType,
                protocol: c.protocol,
                relayProtocol: c.relayProtocol,
                address: c.address,
                port: c.port
            };
        };

        return {
            state: pair.state,
            local: candidate(pair.localCandidateId),
            remote: candidate(pair.remoteCandidateId)
        };
    }

    /** The ICE policy and server URLs of the bridge PeerConnection (from XEP-0215). */
    function iceConfiguration() {
        const pc = bridgePeerConnection();

        if (!pc) {
            return null;
        }
        const { iceTransportPolicy, iceServers } = pc.getConfiguration();

        return {
            iceTransportPolicy,
            urls: (iceServers || []).flatMap(server => [].concat(server.urls))
        };
    }

    /** Inbound RTP counters of each remote track, from the bridge PeerConnection. */
    async function stats() {
        const pc = bridgePeerConnection();

        if (!pc) {
            return [];
        }
        const inbound = [];

        (await pc.getStats()).forEach(report => {
            if (report.type === 'inbound-rtp') {
                inbound.push(report);
            }
        });

        return conference.getParticipants()
            .flatMap(participant => participant.getTracks())
            .map(track => {
                const id = track.getTrack().id;
                const report = inbound.find(r => r.trackIdentifier === id)
                    || inbound.find(r => r.ssrc === track.getSSRC()) || {};

                return {
                    participant: track.getParticipantId(),
                    type: track.getType(),
                    trackId: id,
                    ssrc: track.getSSRC(),
                    packetsReceived: report.packetsReceived || 0,
                    framesDecoded: report.framesDecoded || 0,
                    totalAudioEnergy: report.totalAudioEnergy || 0
                };
            });
    }

    window.vwMeeting = {
        get state() {
            return state;
        },
        myId: () => (conference ? conference.myUserId() : null),
        remoteParticipants: () => (conference ? conference.getParticipants().map(p => p.getId()) : []),
        remoteVideoTracks: () => [...tiles.values()].filter(tile => tile.track).length,
        localMuted: () => ({ audio: localMuted('audio'), video: localMuted('video') }),
        stats,
        candidatePair,
        iceConfiguration,
        lobbyWaiting: () => [...waiting].map(([id, entry]) => ({ id, name: entry.name })),
        admit: id => conference.lobbyApproveAccess(id),
        deny: id => conference.lobbyDenyAccess(id),
        membersOnly: () => Boolean(conference) && conference.isMembersOnly(),
        setLobby,
        leave
    };

    async function start() {
        document.title = `${settings.room} · vw`;
        document.getElementById('room-name').textContent = settings.room;
        showStatus();
        buttons.audio.addEventListener('click', () => toggle('audio'));
        buttons.video.addEventListener('click', () => toggle('video'));
        buttons.leave.addEventListener('click', leave);
        buttons.lobby.addEventListener('click', () => setLobby(!conference.isMembersOnly()));
        knockForm.addEventListener('submit', event => {
            event.preventDefault();
            knock(knockName.value.trim());
        });
        window.addEventListener('beforeunload', leave);
        JitsiMeetJS.setLogLevel(JitsiMeetJS.logLevels.WARN);
        JitsiMeetJS.init({ enableUnifiedOnChrome: true });
        localTracks = await createLocalTracks();
        if (state !== 'connecting') {
            localTracks.forEach(track => track.dispose());
            localTracks = [];

            return;
        }
        const video = localTrack('video');

        if (video) {
            video.attach(localVideo);
        }
        connect(new URLSearchParams(location.search).get('jwt') || undefined);
    }

    start();
})();
