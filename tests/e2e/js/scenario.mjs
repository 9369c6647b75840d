#!/usr/bin/env node
// Drive a real strophe.js client through one XMPP scenario and report on it.
//
//   node scenario.mjs '<json>'
//
// Input (JSON object, first CLI argument):
//   url             ws://host:port/xmpp-websocket?... (RFC 7395) or
//                   http://host:port/http-bind?...    (XEP-0124/0206 BOSH)
//   transport       "websocket" | "bosh" (must agree with the url's scheme;
//                   inferred from it when omitted)
//   domain          XMPP domain, e.g. "localhost"
//   jid, password   optional; without both, SASL ANONYMOUS is used
//   muc             optional room JID to join, e.g. "r1@conference.localhost"
//   nick            optional nickname (default: random "strophe-xxxxxx")
//   instant_room    optional bool: if the join creates a locked room (status
//                   201), submit the default configuration (XEP-0045 10.1.2)
//   wait_occupants  optional int: before sending `message`, wait until this many
//                   occupants (self included) are in the room
//   message         optional groupchat body to send once joined
//   expect_messages optional int: live groupchat messages from others to wait for
//   hold_seconds    optional: stay in the room at least this long after joining
//   ping            optional bool (default true): XEP-0199 ping to the domain
//   timeout         overall seconds (default 20)
//
// Output: exactly one JSON line on stdout (see RESULT below). Exit status 0 when
// the scenario ran to its end, including when the server refused us (auth
// failure, connection failure, MUC join error): the caller asserts on the JSON.
// Exit status 2 on a timeout and 3 on a harness error; a JSON line is printed
// then too. Env VW_XMPP_TRACE=1 logs raw XML traffic (and strophe's log) to stderr.

import { installXMLHttpRequest, NodeXMLHttpRequest } from './xhr-shim.mjs';

// Everything except the one result line must go to stderr; strophe.js logs with
// console.debug/info, which Node writes to stdout.
for (const name of ['log', 'debug', 'info', 'warn', 'trace']) {
    console[name] = (...args) => console.error(...args);
}

const TRACE = ['1', 'true', 'yes'].includes(String(process.env.VW_XMPP_TRACE || '').toLowerCase());

installXMLHttpRequest();
let strophe;
try {
    strophe = await import('strophe.js');
} catch (e) {
    // Most likely `npm ci --prefix tests/e2e/js` was not run.
    process.stdout.write(JSON.stringify({ connected: false, error: `cannot load strophe.js: ${e?.message || e}` }) + '\n');
    process.exit(3);
}
const { Strophe, $iq, $msg, $pres } = strophe;

// strophe.js' Node shim sets globalThis.WebSocket = ws at import time and the
// websocket transport looks the global up on connect. Wrap it to learn *why* a
// connection failed (strophe only reports a generic CONNFAIL): ws's error
// carries "Unexpected server response: 403", "connect ECONNREFUSED ...", etc.
const BaseWebSocket = globalThis.WebSocket;
class ObservedWebSocket extends BaseWebSocket {
    constructor(...args) {
        super(...args);
        this.on('error', (e) => noteTransportError(`websocket: ${e?.message || e}`));
        this.on('close', (code, reason) => {
            RESULT.ws_close = { code, reason: reason ? reason.toString() : '' };
        });
    }
}
globalThis.WebSocket = ObservedWebSocket;
NodeXMLHttpRequest.onTransportError = (msg) => noteTransportError(`bosh: ${msg}`);

function lastTransportError() {
    const errs = RESULT.transport_errors;
    return errs.length ? ` [${errs[errs.length - 1]}]` : '';
}

function noteTransportError(msg) {
    if (RESULT.transport_errors.length < 20) RESULT.transport_errors.push(msg);
}

Strophe.setLogLevel(TRACE ? Strophe.LogLevel.INFO : Strophe.LogLevel.ERROR);

const NS_MUC = 'http://jabber.org/protocol/muc';
const NS_MUC_OWNER = 'http://jabber.org/protocol/muc#owner';
const NS_MUC_USER = 'http://jabber.org/protocol/muc#user';
const NS_PING = 'urn:xmpp:ping';
const NS_OCCUPANT_ID = 'urn:xmpp:occupant-id:0';
const NS_DELAY = 'urn:xmpp:delay';
const NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';
const NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl';

const GRACE_MS = 6000; // > LEAVE_WAIT_MS + DISCONNECT_WAIT_MS
const LEAVE_WAIT_MS = 2000;
const DISCONNECT_WAIT_MS = 3000;

const STATUS_NAMES = Object.fromEntries(Object.entries(Strophe.Status).map(([k, v]) => [v, k]));

const RESULT = {
    connected: false,
    status: null, // last strophe status before the harness's own disconnect
    statuses: [], // every status change: {status, condition}
    jid: null, // bound full JID
    transport: null,
    joined: false,
    nick: null,
    occupants: [], // {nick, jid, role, affiliation, self, available, status_codes}
    messages: [], // groupchat messages with a body: {from, nick, body, self, delayed}
    ping_ok: false,
    ping_error: null,
    muc_error: null,
    instant_room: null, // "ok" / error, when instant_room was asked for and the room was new
    transport_errors: [], // HTTP / WebSocket level failures seen by the transport
    ws_close: null, // {code, reason} of the WebSocket close, if any
    error: null,
    auth_failure: null, // SASL <failure/> condition element name, e.g. "not-authorized"
    auth_failure_text: null, // SASL <failure/><text/> content, if any
    elapsed: 0,
};

const started = Date.now();
let finished = false;
let conn = null;

function emit(exitCode) {
    if (finished) return;
    finished = true;
    RESULT.elapsed = (Date.now() - started) / 1000;
    process.stdout.write(JSON.stringify(RESULT) + '\n', () => process.exit(exitCode));
    // If stdout cannot be flushed for some reason, do not hang forever.
    setTimeout(() => process.exit(exitCode), 2000).unref();
}

function fail(exitCode, message) {
    if (!RESULT.error) RESULT.error = message;
    try {
        conn?.reset?.();
    } catch {
        /* ignore */
    }
    emit(exitCode);
}

process.on('uncaughtException', (e) => fail(3, `harness exception: ${e?.stack || e}`));
process.on('unhandledRejection', (e) => fail(3, `harness rejection: ${e?.stack || e}`));

// ---------------------------------------------------------------- input ---

let scenario;
try {
    if (process.argv.length < 3) throw new Error("usage: node scenario.mjs '<json>'");
    scenario = JSON.parse(process.argv[2]);
    if (!scenario || typeof scenario !== 'object') throw new Error('scenario must be a JSON object');
    if (!scenario.url) throw new Error('scenario.url is required');
} catch (e) {
    fail(3, `bad scenario: ${e.message}`);
}

if (!finished) {
    main().catch((e) => fail(3, `harness exception: ${e?.stack || e}`));
}

// -------------------------------------------------------------- helpers ---

function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

function childElements(elem, localName = null, ns = null) {
    const out = [];
    if (!elem) return out;
    for (let n = elem.firstChild; n; n = n.nextSibling) {
        if (n.nodeType !== 1) continue;
        const name = n.localName || n.tagName;
        if (localName && name !== localName) continue;
        if (ns && Strophe.getNamespace(n) !== ns) continue;
        out.push(n);
    }
    return out;
}

function firstChild(elem, localName = null, ns = null) {
    return childElements(elem, localName, ns)[0] ?? null;
}

function textOf(elem) {
    return elem ? elem.textContent ?? '' : null;
}

/** The defined-condition element name of a stanza error or SASL failure. */
function conditionOf(container, ns) {
    for (const c of childElements(container)) {
        const name = c.localName || c.tagName;
        if (name !== 'text' && (!ns || Strophe.getNamespace(c) === ns)) return name;
    }
    return null;
}

function stanzaError(stanza) {
    const err = firstChild(stanza, 'error');
    if (!err) return 'error';
    const cond = conditionOf(err, NS_STANZAS) || 'undefined-condition';
    const text = textOf(firstChild(err, 'text', NS_STANZAS));
    return text ? `${cond}: ${text}` : cond;
}

/** A promise plus its resolver, resolved at most once. */
function deferred() {
    let resolve;
    const promise = new Promise((r) => {
        resolve = r;
    });
    let done = false;
    return {
        promise,
        resolve: (v) => {
            if (!done) {
                done = true;
                resolve(v);
            }
        },
        get done() {
            return done;
        },
    };
}

/** Wait until predicate() is true, a change is signalled, or the deadline passes. */
async function waitFor(predicate, deadline, pollMs = 50) {
    while (!predicate()) {
        if (Date.now() >= deadline) return false;
        await sleep(Math.min(pollMs, Math.max(1, deadline - Date.now())));
    }
    return true;
}

// ----------------------------------------------------------------- main ---

async function main() {
    const timeoutSec = Number(scenario.timeout ?? 20);
    const deadline = started + timeoutSec * 1000;
    let phase = 'connect';
    let timedOut = false;
    const timeoutError = () => {
        timedOut = true;
        if (!RESULT.error) RESULT.error = `timeout after ${timeoutSec}s during ${phase}${lastTransportError()}`;
    };
    // Phases stop waiting at `deadline`, record a timeout error and still leave
    // the room and disconnect cleanly; this hard timer only catches a hang in that.
    const globalTimer = setTimeout(
        () => fail(2, `timeout after ${timeoutSec}s during ${phase} (hard)`),
        timeoutSec * 1000 + GRACE_MS,
    );
    const untilDeadline = () => sleep(Math.max(0, deadline - Date.now())).then(() => 'deadline');

    const url = String(scenario.url);
    const scheme = url.split(':', 1)[0].toLowerCase();
    const inferred = scheme === 'ws' || scheme === 'wss' ? 'websocket' : 'bosh';
    const transport = scenario.transport || inferred;
    if (transport !== 'websocket' && transport !== 'bosh') {
        return fail(3, `bad scenario: unknown transport ${JSON.stringify(transport)}`);
    }
    if (transport !== inferred) {
        return fail(3, `bad scenario: transport ${transport} does not match url scheme ${scheme}:`);
    }
    RESULT.transport = transport;

    const domain = scenario.domain || new URL(url).hostname;
    const anonymous = !(scenario.jid && scenario.password != null);

    conn = new Strophe.Connection(url, {});
    if (TRACE) {
        const tag = `[${scenario.nick || 'strophe'}]`;
        conn.rawInput = (data) => process.stderr.write(`${tag} RECV ${data}\n`);
        conn.rawOutput = (data) => process.stderr.write(`${tag} SEND ${data}\n`);
    }

    // ---- connect + authenticate
    const connected = deferred(); // resolves true (CONNECTED) or false (gave up)
    const disconnected = deferred();
    let selfDisconnect = false;

    const onStatus = (status, condition, elem) => {
        const name = STATUS_NAMES[status] ?? String(status);
        RESULT.statuses.push({ status: name, condition: condition ?? null });
        if (!selfDisconnect) RESULT.status = name;
        if (TRACE) process.stderr.write(`status ${name}${condition ? ` (${condition})` : ''}\n`);
        switch (status) {
            case Strophe.Status.CONNECTED:
                RESULT.connected = true;
                RESULT.jid = conn.jid;
                connected.resolve(true);
                break;
            case Strophe.Status.AUTHFAIL:
                if (elem && (elem.localName || elem.tagName) === 'failure') {
                    RESULT.auth_failure = conditionOf(elem, NS_SASL) || 'failure';
                    RESULT.auth_failure_text = textOf(firstChild(elem, 'text'));
                } else if (!RESULT.auth_failure) {
                    RESULT.auth_failure = condition || 'authfail';
                }
                if (!RESULT.error) RESULT.error = `authentication failed: ${RESULT.auth_failure}`;
                connected.resolve(false);
                break;
            case Strophe.Status.CONNFAIL:
            case Strophe.Status.ERROR:
            case Strophe.Status.CONNTIMEOUT:
                if (!RESULT.error && !selfDisconnect) {
                    RESULT.error = `${name.toLowerCase()}${condition ? `: ${condition}` : ''}${lastTransportError()}`;
                }
                connected.resolve(false);
                break;
            case Strophe.Status.DISCONNECTED:
                if (!selfDisconnect && !RESULT.error) {
                    RESULT.error = RESULT.connected
                        ? `disconnected by server${condition ? `: ${condition}` : ''}`
                        : `disconnected before connecting${condition ? `: ${condition}` : ''}${lastTransportError()}`;
                }
                connected.resolve(false);
                disconnected.resolve(true);
                break;
            default:
                break;
        }
    };

    if (anonymous) {
        conn.connect(domain, null, onStatus);
    } else {
        conn.connect(String(scenario.jid), String(scenario.password), onStatus);
    }

    const ok = await Promise.race([connected.promise, untilDeadline()]);
    if (ok === 'deadline') {
        timeoutError();
        selfDisconnect = true;
        try {
            conn.reset();
        } catch {
            /* ignore */
        }
        clearTimeout(globalTimer);
        return emit(2);
    }
    if (!ok) {
        // Auth failure / connection failure: give strophe a moment to finish
        // tearing down, then report. Exit 0: the server's answer is the result.
        phase = 'teardown';
        if (!disconnected.done) {
            // strophe.js leaves the stream open after a SASL failure.
            selfDisconnect = true;
            try {
                conn.disconnect('auth failed');
            } catch {
                /* ignore */
            }
            await Promise.race([disconnected.promise, sleep(1500)]);
        }
        clearTimeout(globalTimer);
        return emit(0);
    }

    // ---- room state, installed before anything is sent
    const room = scenario.muc ? String(scenario.muc).toLowerCase() : null;
    const nick = scenario.nick ? String(scenario.nick) : `strophe-${Math.random().toString(16).slice(2, 8)}`;
    const occupants = new Map(); // nick -> entry
    let liveFromOthers = 0;
    const joined = deferred();
    const left = deferred();

    if (room) {
        RESULT.nick = nick;
        conn.addHandler(
            (pres) => {
                const from = pres.getAttribute('from') || '';
                if (Strophe.getBareJidFromJid(from).toLowerCase() !== room) return true;
                const type = pres.getAttribute('type');
                const occNick = Strophe.getResourceFromJid(from);
                if (type === 'error') {
                    RESULT.muc_error = stanzaError(pres);
                    if (!joined.done) {
                        RESULT.error = RESULT.error || `muc join failed: ${RESULT.muc_error}`;
                        joined.resolve(false);
                    }
                    return true;
                }
                const x = firstChild(pres, 'x', NS_MUC_USER);
                const item = firstChild(x, 'item');
                const codes = childElements(x, 'status').map((s) => Number(s.getAttribute('code')));
                const isSelf = codes.includes(110) || occNick === nick;
                if (occNick == null) return true;
                const entry = occupants.get(occNick) || { nick: occNick, jid: null, role: null, affiliation: null };
                entry.self = Boolean(entry.self || isSelf);
                entry.available = type !== 'unavailable';
                entry.jid = item?.getAttribute('jid') ?? entry.jid;
                if (entry.available) {
                    // Keep what the occupant had while present (an unavailable
                    // presence always says role='none').
                    entry.role = item?.getAttribute('role') ?? entry.role;
                    entry.affiliation = item?.getAttribute('affiliation') ?? entry.affiliation;
                    entry.status_codes = codes;
                    entry.occupant_id = firstChild(pres, 'occupant-id', NS_OCCUPANT_ID)?.getAttribute('id') ?? null;
                } else {
                    entry.left_status_codes = codes;
                }
                occupants.set(occNick, entry);
                RESULT.occupants = [...occupants.values()];
                if (codes.includes(110)) {
                    if (type === 'unavailable') {
                        left.resolve(true);
                    } else {
                        if (codes.includes(201) && scenario.instant_room) {
                            // XEP-0045 10.1.2: accept the default configuration
                            // so that a locked new room opens for others.
                            conn.sendIQ(
                                $iq({ type: 'set', to: room })
                                    .c('query', { xmlns: NS_MUC_OWNER })
                                    .c('x', { xmlns: 'jabber:x:data', type: 'submit' }),
                                () => {
                                    RESULT.instant_room = 'ok';
                                },
                                (e) => {
                                    RESULT.instant_room = e ? stanzaError(e) : 'timeout';
                                },
                                5000,
                            );
                        }
                        joined.resolve(true);
                    }
                }
                return true;
            },
            null,
            'presence',
        );
        conn.addHandler(
            (msg) => {
                const from = msg.getAttribute('from') || '';
                if (Strophe.getBareJidFromJid(from).toLowerCase() !== room) return true;
                if (msg.getAttribute('type') === 'error') {
                    RESULT.muc_error = stanzaError(msg);
                    return true;
                }
                const body = firstChild(msg, 'body');
                if (!body) return true; // subject change, chat state, ...
                const msgNick = Strophe.getResourceFromJid(from);
                const delayed = Boolean(firstChild(msg, 'delay', NS_DELAY) || firstChild(msg, 'x', 'jabber:x:delay'));
                const self = msgNick === nick;
                RESULT.messages.push({ from, nick: msgNick, body: textOf(body), self, delayed });
                if (!self && !delayed) liveFromOthers += 1;
                return true;
            },
            null,
            'message',
            'groupchat',
        );
    }

    // ---- XEP-0199 ping to the domain
    if (scenario.ping !== false) {
        phase = 'ping';
        const pong = deferred();
        conn.sendIQ(
            $iq({ type: 'get', to: domain }).c('ping', { xmlns: NS_PING }),
            () => {
                RESULT.ping_ok = true;
                pong.resolve();
            },
            (stanza) => {
                RESULT.ping_error = stanza ? stanzaError(stanza) : 'timeout';
                pong.resolve();
            },
            Math.max(1000, Math.min(10000, deadline - Date.now() - 500)),
        );
        await pong.promise;
    }

    // ---- MUC
    if (room && RESULT.connected && !disconnected.done) {
        phase = 'muc join';
        conn.send($pres({ to: `${room}/${nick}` }).c('x', { xmlns: NS_MUC }));
        const j = await Promise.race([joined.promise, disconnected.promise.then(() => false), untilDeadline()]);
        if (j === 'deadline') timeoutError();
        RESULT.joined = j === true;
        const joinedAt = Date.now();

        if (RESULT.joined) {
            const present = () => [...occupants.values()].filter((o) => o.available).length;
            const want = Number(scenario.wait_occupants ?? 0);
            if (want > 0) {
                phase = `waiting for ${want} occupants`;
                if (!(await waitFor(() => present() >= want || disconnected.done, deadline))) timeoutError();
            }
            if (scenario.message != null && !disconnected.done && !timedOut) {
                conn.send($msg({ to: room, type: 'groupchat' }).c('body').t(String(scenario.message)));
            }
            const expect = Number(scenario.expect_messages ?? 0);
            if (expect > 0) {
                phase = `waiting for ${expect} messages (got ${liveFromOthers})`;
                const got = await waitFor(() => {
                    phase = `waiting for ${expect} messages (got ${liveFromOthers})`;
                    return liveFromOthers >= expect || disconnected.done;
                }, deadline);
                if (!got) timeoutError();
            }
            const hold = Number(scenario.hold_seconds ?? 0) * 1000;
            if (hold > 0 && !timedOut) {
                phase = 'holding in room';
                await waitFor(() => disconnected.done, Math.min(deadline, joinedAt + hold));
            }
            // Leave the room and wait (briefly) for our own unavailable presence.
            if (!disconnected.done) {
                phase = 'muc leave';
                conn.send($pres({ to: `${room}/${nick}`, type: 'unavailable' }));
                await Promise.race([left.promise, disconnected.promise, sleep(LEAVE_WAIT_MS)]);
            }
        }
    }

    // ---- disconnect
    phase = 'disconnect';
    if (!disconnected.done) {
        selfDisconnect = true;
        conn.disconnect('done');
        await Promise.race([disconnected.promise, sleep(DISCONNECT_WAIT_MS)]);
    }
    clearTimeout(globalTimer);
    emit(timedOut ? 2 : 0);
}
