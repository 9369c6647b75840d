// Minimal XMLHttpRequest for Node, just enough for strophe.js' BOSH transport.
//
// strophe.js' Node build installs DOMParser / XMLSerializer / document / WebSocket
// globals (via @xmldom/xmldom and ws), but not XMLHttpRequest, which BOSH needs.
// Node has no XMLHttpRequest of its own, so this file provides one on top of
// node:http / node:https.
//
// Notes on what strophe.js relies on (src/request.ts, src/transports/bosh.ts):
//  - readyState / status / onreadystatechange, fired asynchronously;
//  - responseXML must be a parsed Document: Request.getResponse() returns
//    `responseXML.documentElement` and, when responseXML is missing, parses
//    responseText only to validate it and then returns null (so a shim without
//    responseXML silently breaks BOSH);
//  - overrideMimeType, setRequestHeader, withCredentials, getAllResponseHeaders,
//    abort.

import http from 'node:http';
import https from 'node:https';

const UNSENT = 0;
const OPENED = 1;
const HEADERS_RECEIVED = 2;
const LOADING = 3;
const DONE = 4;

export class NodeXMLHttpRequest {
    /** Optional hook: called with a string for every non-2xx answer or network error. */
    static onTransportError = null;

    static UNSENT = UNSENT;
    static OPENED = OPENED;
    static HEADERS_RECEIVED = HEADERS_RECEIVED;
    static LOADING = LOADING;
    static DONE = DONE;

    constructor() {
        this.readyState = UNSENT;
        this.status = 0;
        this.statusText = '';
        this.responseText = '';
        this.responseXML = null;
        this.withCredentials = false;
        this.timeout = 0;
        this.onreadystatechange = null;
        this.onload = null;
        this.onerror = null;
        this.onabort = null;
        this._method = 'GET';
        this._url = null;
        this._headers = {};
        this._responseHeaders = {};
        this._req = null;
        this._aborted = false;
    }

    overrideMimeType(_mime) {
        // The response is always parsed as XML (see _finish).
    }

    open(method, url, async = true) {
        if (async === false) {
            throw new Error('NodeXMLHttpRequest: synchronous requests are not supported');
        }
        this._method = String(method).toUpperCase();
        this._url = new URL(String(url));
        this._headers = {};
        this._aborted = false;
        this.readyState = OPENED;
    }

    setRequestHeader(name, value) {
        if (this.readyState !== OPENED) {
            throw new Error('NodeXMLHttpRequest: setRequestHeader called in wrong state');
        }
        this._headers[name] = String(value);
    }

    getResponseHeader(name) {
        const value = this._responseHeaders[String(name).toLowerCase()];
        if (value === undefined) return null;
        return Array.isArray(value) ? value.join(', ') : String(value);
    }

    getAllResponseHeaders() {
        if (this.readyState < HEADERS_RECEIVED) return '';
        return Object.entries(this._responseHeaders)
            .map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(', ') : v}\r\n`)
            .join('');
    }

    send(body = null) {
        if (this.readyState !== OPENED) {
            throw new Error('NodeXMLHttpRequest: send called in wrong state');
        }
        const url = this._url;
        const lib = url.protocol === 'https:' ? https : http;
        const payload = body == null ? null : Buffer.from(String(body), 'utf8');
        const headers = { ...this._headers };
        if (payload) headers['Content-Length'] = String(payload.length);
        let req;
        try {
            req = lib.request(url, { method: this._method, headers });
        } catch (e) {
            queueMicrotask(() => this._fail(e));
            return;
        }
        this._req = req;
        if (this.timeout > 0) {
            req.setTimeout(this.timeout, () => req.destroy(new Error('timeout')));
        }
        req.on('response', (res) => {
            if (this._aborted) {
                res.resume();
                return;
            }
            this.status = res.statusCode ?? 0;
            this.statusText = res.statusMessage ?? '';
            this._responseHeaders = res.headers;
            this._setState(HEADERS_RECEIVED);
            const chunks = [];
            let loading = false;
            res.on('data', (chunk) => {
                chunks.push(chunk);
                if (!loading && !this._aborted) {
                    loading = true;
                    this._setState(LOADING);
                }
            });
            res.on('end', () => {
                if (this._aborted) return;
                this._finish(Buffer.concat(chunks).toString('utf8'));
            });
            res.on('error', (e) => this._fail(e));
        });
        req.on('error', (e) => this._fail(e));
        req.end(payload ?? undefined);
    }

    abort() {
        // Browsers reset to UNSENT after aborting. strophe.js replaces
        // onreadystatechange with a no-op right after calling abort(), so no
        // event is fired here.
        this._aborted = true;
        if (this._req) {
            this._req.destroy();
            this._req = null;
        }
        this.readyState = UNSENT;
        this.status = 0;
    }

    _setState(state) {
        this.readyState = state;
        if (typeof this.onreadystatechange === 'function') {
            this.onreadystatechange();
        }
    }

    _finish(text) {
        this._req = null;
        if ((this.status < 200 || this.status >= 300) && NodeXMLHttpRequest.onTransportError) {
            NodeXMLHttpRequest.onTransportError(`HTTP ${this.status} ${this.statusText} from ${this._method} ${this._url}`.trim());
        }
        this.responseText = text;
        this.responseXML = null;
        if (text.trim() !== '' && typeof globalThis.DOMParser === 'function') {
            // The DOMParser installed by strophe.js' Node shim returns a
            // <parsererror> document on malformed input, as browsers do.
            this.responseXML = new globalThis.DOMParser().parseFromString(text, 'text/xml');
        }
        this._setState(DONE);
        if (typeof this.onload === 'function') this.onload();
    }

    _fail(err) {
        if (this._aborted) return;
        this._req = null;
        this.status = 0;
        this.statusText = '';
        this.responseText = '';
        this.responseXML = null;
        this._error = err;
        if (NodeXMLHttpRequest.onTransportError) {
            NodeXMLHttpRequest.onTransportError(`${this._method} ${this._url}: ${err?.message || err}`);
        }
        this._setState(DONE);
        if (typeof this.onerror === 'function') this.onerror(err);
    }
}

export function installXMLHttpRequest() {
    if (typeof globalThis.XMLHttpRequest !== 'function') {
        globalThis.XMLHttpRequest = NodeXMLHttpRequest;
    }
}
