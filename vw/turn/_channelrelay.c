/* Media relaying for vw-turn's UDP sockets (ChannelData, Send and Data indications), compiled:
 * the one loop of the TURN server that runs for every media packet.
 *
 * ChannelRelay.drain(epoll_fd, readers, clock, budget, per_socket) reads the UDP sockets an epoll
 * object reports ready, as vw.common.poller.DatagramPoller does in Python. A datagram a lease
 * covers is relayed; every other one goes to its socket's Python handler, which decides
 * everything (the leases only repeat decisions it made). Python holds the leases in plain
 * dicts (see vw/turn/leases.py); an address is its packed IP and 2-byte port:
 *
 *   the listening socket (from_peers false): by client address and the ChannelData's 2-byte
 *     channel number, or by client address and the peer address of a Send indication
 *     -> (relay fd, peer address, until)
 *   a relay socket (from_peers true): by peer address
 *     -> (listening fd, client address, until, channel), channel 0 for Data indications
 *
 * A lease is used only while ``clock() < until``; a ChannelData whose length field does not match
 * its datagram as RFC 8656 section 12.4 allows is never relayed here.
 *
 * The first request of every allocation is an Allocate without credentials, which the core
 * answers with a 401 that differs only in its transaction id until its nonce changes. Python
 * leases that answer too, as the object's ``challenge`` (see answer_challenge()).
 *
 * Given its event loop's epoll object, drain() lingers: after a wake-up, it waits there
 * (without the GIL) and drains again while its own epoll object is all that is ready, until
 * the loop's next timer. A media relay's wake-ups then cost no Python, and a busy server's
 * requests none of the event loop's.
 *
 * System calls come in batches: a socket is read with recvmmsg, and relayed datagrams wait in
 * the object's slots until the pass over the ready sockets is done or the slots are full; then
 * consecutive ones leaving by the same socket go in one sendmmsg. What the Python handlers send
 * meanwhile joins the same queue (send()), so order holds. A batch that reached Python or was
 * answered here is sent as soon as it is done, so the answers to its requests leave in a
 * burst without waiting for the pass: waking a client that sleeps costs the sender several
 * times what the datagram does. A datagram the kernel refuses is dropped, as UDP may lose
 * one, and counted (send_errors).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

/* As vw.common.poller.MAX_DATAGRAM: a larger datagram is cut. */
#define MAX_DATAGRAM 8192
#define HEADER 4
/* Free bytes before a datagram read: room for a Data indication's head with an IPv6 peer. */
#define HEADROOM (STUN_HEADER + 4 + 20 + 4)
#define STUN_HEADER 20
#define TRANSACTION_ID 12
#define MAGIC_COOKIE 0x2112A442u
#define FINGERPRINT_XOR 0x5354554Eu
#define SEND_INDICATION 0x0016
#define DATA_INDICATION 0x0017
#define XOR_PEER_ADDRESS 0x0012
#define DATA 0x0013
#define DONT_FRAGMENT 0x001A
#define FINGERPRINT 0x8028
#define ALLOCATE_REQUEST 0x0003
#define ALLOCATE_ERROR 0x0113
#define LIFETIME 0x000D
#define REQUESTED_TRANSPORT 0x0019
/* The longest challenge answered here (the core's is about 80 bytes). */
#define CHALLENGE_MAX 1024
/* The longest lease key: a client's IPv6 address and port, then a peer's. */
#define KEY_MAX (18 + 18)
/* Ready sockets taken from the epoll object at a time. */
#define READY_MAX 64
/* Datagrams held at once: read in one recvmmsg, or relayed and waiting to be sent. */
#define SLOTS 64

typedef struct {
    /* HEADROOM free bytes, the datagram, then room for a STUN attribute's padding */
    unsigned char bytes[HEADROOM + MAX_DATAGRAM + 4];
} Slot;

typedef struct {
    PyObject_HEAD
    unsigned long long to_peers;
    unsigned long long to_clients;
    unsigned long long bytes_to_peers;
    unsigned long long bytes_to_clients;
    unsigned long long challenges;
    unsigned long long send_errors;
    /* None, or (listening fd, attributes, since, until, amplification limit, admit): see
     * answer_challenge() */
    PyObject *challenge;
    PyObject *on_error;  /* called with an exception a handler raised, and the source */
    int draining;  /* in drain(): a handler may not call it again */
    int handed;  /* datagrams given to Python handlers in this drain() */
    /* random bytes from getrandom(), for Data indications' transaction ids */
    unsigned char random[TRANSACTION_ID * 256];
    size_t random_used;
    Slot *slots;
    int used;  /* slots holding datagrams not yet sent or handled */
    /* reading: one recvmmsg into slots[used...] */
    struct mmsghdr in[SLOTS];
    struct iovec in_iov[SLOTS];
    struct sockaddr_storage sources[SLOTS];
    /* sending: datagrams relayed or given to send(), waiting for flush() */
    int pending;
    int passing;  /* in a pass of drain_ready(): send() queues */
    PyObject *held[SLOTS];  /* the bytes object send() queued in each place, or NULL */
    int out_fd[SLOTS];
    struct mmsghdr out[SLOTS];
    struct iovec out_iov[SLOTS];
    struct sockaddr_storage destinations[SLOTS];
} ChannelRelay;

static uint32_t crc_table[256];

static void
crc_table_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) {
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        }
        crc_table[n] = c;
    }
}

/* CRC-32 (ISO 3309, as FINGERPRINT uses it) of ``length`` bytes at ``data``. */
static uint32_t
crc32_of(const unsigned char *data, Py_ssize_t length)
{
    uint32_t c = 0xFFFFFFFFu;
    for (Py_ssize_t i = 0; i < length; i++) {
        c = crc_table[(c ^ data[i]) & 0xFF] ^ (c >> 8);
    }
    return c ^ 0xFFFFFFFFu;
}

static unsigned
get16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

static uint32_t
get32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void
put16(unsigned char *p, unsigned value)
{
    p[0] = (unsigned char)(value >> 8);
    p[1] = (unsigned char)value;
}

static void
put32(unsigned char *p, uint32_t value)
{
    put16(p, value >> 16);
    put16(p + 2, value & 0xFFFF);
}

/* A fresh transaction id (RFC 8489 section 6: cryptographically random) into ``id``: 0, or -1
 * if the kernel gave no random bytes. */
static int
new_transaction_id(ChannelRelay *self, unsigned char *id)
{
    if (self->random_used == sizeof(self->random)) {
        if (getrandom(self->random, sizeof(self->random), GRND_NONBLOCK)
                != (ssize_t)sizeof(self->random)) {
            return -1;
        }
        self->random_used = 0;
    }
    memcpy(id, self->random + self->random_used, TRANSACTION_ID);
    self->random_used += TRANSACTION_ID;
    return 0;
}

/* The packed address of ``source`` into ``key``: its length; 0 for a scoped (link-local)
 * IPv6 address, which Python names with its scope and no lease covers; -1 for another
 * family. */
static Py_ssize_t
pack_source(const struct sockaddr_storage *source, unsigned char *key)
{
    if (source->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)source;
        memcpy(key, &v4->sin_addr, 4);
        memcpy(key + 4, &v4->sin_port, 2);
        return 6;
    }
    if (source->ss_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)source;
        if (v6->sin6_scope_id != 0) {
            return 0;
        }
        memcpy(key, &v6->sin6_addr, 16);
        memcpy(key + 16, &v6->sin6_port, 2);
        return 18;
    }
    return -1;
}

/* A packed address (bytes of 6 or 18) as a socket address; its length, or 0 if malformed. */
static socklen_t
unpack_destination(PyObject *packed, struct sockaddr_storage *destination)
{
    if (!PyBytes_CheckExact(packed)) {
        return 0;
    }
    const char *raw = PyBytes_AS_STRING(packed);
    memset(destination, 0, sizeof(*destination));
    if (PyBytes_GET_SIZE(packed) == 6) {
        struct sockaddr_in *v4 = (struct sockaddr_in *)destination;
        v4->sin_family = AF_INET;
        memcpy(&v4->sin_addr, raw, 4);
        memcpy(&v4->sin_port, raw + 4, 2);
        return sizeof(*v4);
    }
    if (PyBytes_GET_SIZE(packed) == 18) {
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)destination;
        v6->sin6_family = AF_INET6;
        memcpy(&v6->sin6_addr, raw, 16);
        memcpy(&v6->sin6_port, raw + 16, 2);
        return sizeof(*v6);
    }
    return 0;
}

/* The lease under ``key`` if it is a tuple of at least ``size`` items valid at ``now``. */
static PyObject *
live_lease(PyObject *leases, const unsigned char *key, Py_ssize_t length, Py_ssize_t size,
           double now)
{
    PyObject *name = PyBytes_FromStringAndSize((const char *)key, length);
    if (name == NULL) {
        PyErr_Clear();
        return NULL;
    }
    PyObject *lease = PyDict_GetItemWithError(leases, name);  /* borrowed */
    Py_DECREF(name);
    if (lease == NULL) {
        PyErr_Clear();
        return NULL;
    }
    /* Exact types only: nothing here may run Python code that could change the dict. */
    if (!PyTuple_CheckExact(lease) || PyTuple_GET_SIZE(lease) < size
            || !PyFloat_CheckExact(PyTuple_GET_ITEM(lease, 2))) {
        return NULL;
    }
    return now < PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(lease, 2)) ? lease : NULL;
}

/* The int at ``index`` of a lease if it is one in [low, high], or -1. */
static long
lease_int(PyObject *lease, Py_ssize_t index, long low, long high)
{
    PyObject *item = PyTuple_GET_ITEM(lease, index);
    if (!PyLong_CheckExact(item)) {
        return -1;
    }
    long value = PyLong_AsLong(item);
    if (value == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    return value < low || value > high ? -1 : value;
}

/* The length of ``address``, an IPv4 or IPv6 socket address. */
static socklen_t
address_length(const struct sockaddr_storage *address)
{
    return address->ss_family == AF_INET
        ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
}

/* (host, port) of ``source``, as Python's socket.recvfrom gives its first two items (a
 * scoped IPv6 address with its %scope). */
static PyObject *
source_address(const struct sockaddr_storage *source)
{
    char host[NI_MAXHOST];
    socklen_t length = address_length(source);
    unsigned short port = source->ss_family == AF_INET
        ? ((const struct sockaddr_in *)source)->sin_port
        : ((const struct sockaddr_in6 *)source)->sin6_port;
    int error = getnameinfo((const struct sockaddr *)source, length, host, sizeof(host), NULL, 0,
                            NI_NUMERICHOST);
    if (error != 0) {
        return PyErr_Format(PyExc_OSError, "getnameinfo: %s", gai_strerror(error));
    }
    return Py_BuildValue("(si)", host, (int)ntohs(port));
}

/* The seconds ``source()`` gives (a clock's time, a span), into ``seconds``: 0, or -1 with an
 * exception set. */
static int
seconds_from(PyObject *source, double *seconds)
{
    PyObject *value = PyObject_CallNoArgs(source);
    if (value == NULL) {
        return -1;
    }
    double number = PyFloat_AsDouble(value);
    Py_DECREF(value);
    if (number == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    *seconds = number;
    return 0;
}

/* Send what waits, consecutive datagrams from one socket in one sendmmsg. */
static void
flush(ChannelRelay *self)
{
    int start = 0;
    while (start < self->pending) {
        int end = start + 1;
        while (end < self->pending && self->out_fd[end] == self->out_fd[start]) {
            end++;
        }
        while (start < end) {
            int sent = sendmmsg(self->out_fd[start], &self->out[start],
                                (unsigned int)(end - start), 0);
            if (sent < 0 && errno == EINTR) {
                continue;
            }
            if (sent > 0) {
                start += sent;
            }
            else {  /* an error is the first datagram's: drop it */
                self->send_errors++;
                start++;
            }
        }
    }
    for (int i = 0; i < self->pending; i++) {
        Py_CLEAR(self->held[i]);
    }
    self->pending = 0;
}

/* Queue ``length`` bytes at ``data`` for ``fd`` to send to ``destination``. */
static void
queue(ChannelRelay *self, int fd, unsigned char *data, size_t length,
      const struct sockaddr_storage *destination, socklen_t destination_length)
{
    if (self->pending == SLOTS) {
        flush(self);
    }
    int n = self->pending++;
    self->out_fd[n] = fd;
    self->out_iov[n].iov_base = data;
    self->out_iov[n].iov_len = length;
    self->destinations[n] = *destination;
    memset(&self->out[n], 0, sizeof(self->out[n]));
    self->out[n].msg_hdr.msg_name = &self->destinations[n];
    self->out[n].msg_hdr.msg_namelen = destination_length;
    self->out[n].msg_hdr.msg_iov = &self->out_iov[n];
    self->out[n].msg_hdr.msg_iovlen = 1;
    self->held[n] = NULL;
}

/* Client to peer: ``length`` bytes at ``payload`` queued for the peer of the live client lease
 * under ``key`` (``key_length`` bytes), if there is one. */
static int
relay_leased_to_peer(ChannelRelay *self, PyObject *leases, double now, const unsigned char *key,
                     Py_ssize_t key_length, unsigned char *payload, Py_ssize_t length)
{
    PyObject *lease = live_lease(leases, key, key_length, 3, now);
    if (lease == NULL) {
        return 0;
    }
    struct sockaddr_storage peer;
    socklen_t peer_length = unpack_destination(PyTuple_GET_ITEM(lease, 1), &peer);
    int fd = (int)lease_int(lease, 0, 0, INT_MAX);
    if (peer_length == 0 || fd < 0) {
        return 0;
    }
    queue(self, fd, payload, (size_t)length, &peer, peer_length);
    self->to_peers++;
    self->bytes_to_peers += (unsigned long long)length;
    return 1;
}

/* Client to peer: the ChannelData in ``frame`` (``size`` bytes) queued for its peer if a
 * lease covers it. */
static int
relay_to_peer(ChannelRelay *self, PyObject *leases, double now, unsigned char *key,
              Py_ssize_t key_length, unsigned char *frame, Py_ssize_t size)
{
    if (size < HEADER || (frame[0] & 0xC0) != 0x40) {
        return 0;
    }
    Py_ssize_t length = (frame[2] << 8) | frame[3];
    Py_ssize_t end = HEADER + length;
    if (size < end || size > ((end + 3) & ~3)) {
        return 0;
    }
    memcpy(key + key_length, frame, 2);
    return relay_leased_to_peer(self, leases, now, key, key_length + 2, frame + HEADER, length);
}

/* Whether ``message`` (``size`` bytes) is one whole STUN message of ``type``. */
static int
whole_message(const unsigned char *message, Py_ssize_t size, unsigned type)
{
    return size >= STUN_HEADER && size % 4 == 0 && get16(message) == type
        && get32(message + 4) == MAGIC_COOKIE
        && (Py_ssize_t)get16(message + 2) == size - STUN_HEADER;
}

/* Step over the attribute of a whole message at ``*next``: its type, where its value starts and
 * its length, and ``*next`` past its padding. 1, 0 at the end, or -1 if it overruns. */
static int
next_attribute(const unsigned char *message, Py_ssize_t size, Py_ssize_t *next, unsigned *type,
               Py_ssize_t *position, Py_ssize_t *length)
{
    if (*next >= size) {  /* both multiples of 4: an attribute header fits otherwise */
        return 0;
    }
    *type = get16(message + *next);
    *length = get16(message + *next + 2);
    *position = *next + 4;
    if (*position + *length > size) {
        return -1;
    }
    *next = (*position + *length + 3) & ~3;
    return 1;
}

/* Whether the attribute of ``type`` whose ``length``-byte value starts at ``position`` is a
 * FINGERPRINT that ends ``message`` (``size`` bytes) and checks. */
static int
good_fingerprint(const unsigned char *message, Py_ssize_t size, unsigned type,
                 Py_ssize_t position, Py_ssize_t length)
{
    return type == FINGERPRINT && length == 4 && position + length == size
        && get32(message + position) == (crc32_of(message, position - 4) ^ FINGERPRINT_XOR);
}

/* Client to peer: a Send indication of the usual form (RFC 8656 section 11: XOR-PEER-ADDRESS
 * with an IPv4 address and DATA, in either order, perhaps DONT-FRAGMENT, then perhaps a
 * FINGERPRINT that checks; vw/turn/fastpath.py reads the same form in Python) queued for its
 * peer if a lease covers the client and peer. Anything else is Python's to decide. */
static int
relay_send(ChannelRelay *self, PyObject *leases, double now, unsigned char *key,
           Py_ssize_t key_length, unsigned char *message, Py_ssize_t size)
{
    if (!whole_message(message, size, SEND_INDICATION)) {
        return 0;
    }
    const unsigned char *peer = NULL;
    unsigned char *payload = NULL;
    Py_ssize_t payload_length = 0;
    Py_ssize_t next = STUN_HEADER, position, length;
    unsigned type;
    int more;
    while ((more = next_attribute(message, size, &next, &type, &position, &length)) > 0) {
        if (type == XOR_PEER_ADDRESS && peer == NULL) {
            if (length != 8 || message[position + 1] != 0x01) {
                return 0;
            }
            peer = message + position;
        }
        else if (type == DATA && payload == NULL) {
            payload = message + position;
            payload_length = length;
        }
        else if (!(type == DONT_FRAGMENT && length == 0)
                 && !good_fingerprint(message, size, type, position, length)) {
            return 0;
        }
    }
    if (more < 0 || peer == NULL || payload == NULL) {
        return 0;
    }
    unsigned char *packed_peer = key + key_length;
    put32(packed_peer, get32(peer + 4) ^ MAGIC_COOKIE);
    put16(packed_peer + 4, get16(peer + 2) ^ (MAGIC_COOKIE >> 16));
    return relay_leased_to_peer(self, leases, now, key, key_length + 6, payload, payload_length);
}

/* Peer to client as a Data indication: ``data`` (``size`` bytes, HEADROOM free bytes before
 * it and room for padding after) from the peer packed in ``key`` (``key_length`` bytes), sent
 * by ``fd`` to ``client``. */
static int
queue_data_indication(ChannelRelay *self, int fd, const unsigned char *key, Py_ssize_t key_length,
                      unsigned char *data, Py_ssize_t size,
                      const struct sockaddr_storage *client, socklen_t client_length)
{
    Py_ssize_t address_length = key_length == 6 ? 8 : 20;
    Py_ssize_t head = STUN_HEADER + 4 + address_length + 4;
    Py_ssize_t padding = -size & 3;
    Py_ssize_t body = head - STUN_HEADER + size + padding;
    unsigned char *message = data - head;
    if (body > 0xFFFF || new_transaction_id(self, message + 8) < 0) {
        return 0;
    }
    put16(message, DATA_INDICATION);
    put16(message + 2, (unsigned)body);
    put32(message + 4, MAGIC_COOKIE);
    unsigned char *address = message + STUN_HEADER;
    put16(address, XOR_PEER_ADDRESS);
    put16(address + 2, (unsigned)address_length);
    address[4] = 0;
    address[5] = key_length == 6 ? 0x01 : 0x02;
    put16(address + 6, get16(key + key_length - 2) ^ (MAGIC_COOKIE >> 16));
    for (Py_ssize_t i = 0; i < key_length - 2; i++) {  /* XORed with the cookie, then the id */
        address[8 + i] = key[i] ^ message[4 + i];
    }
    put16(address + 4 + address_length, DATA);
    put16(address + 4 + address_length + 2, (unsigned)size);
    memset(data + size, 0, (size_t)padding);
    queue(self, fd, message, (size_t)(head + size + padding), client, client_length);
    return 1;
}

/* Peer to client: ``data`` (``size`` bytes, with HEADROOM free bytes before it) queued for the
 * client as ChannelData, or a Data indication where the lease's channel is 0, if a lease covers
 * its source. */
static int
relay_to_client(ChannelRelay *self, PyObject *leases, double now, const unsigned char *key,
                Py_ssize_t key_length, unsigned char *data, Py_ssize_t size)
{
    PyObject *lease = live_lease(leases, key, key_length, 4, now);
    if (lease == NULL || size > 0xFFFF) {
        return 0;
    }
    struct sockaddr_storage client;
    socklen_t client_length = unpack_destination(PyTuple_GET_ITEM(lease, 1), &client);
    int fd = (int)lease_int(lease, 0, 0, INT_MAX);
    long channel = lease_int(lease, 3, 0, 0x7FFF);
    if (client_length == 0 || fd < 0 || channel < 0 || (channel > 0 && channel < 0x4000)) {
        return 0;
    }
    if (channel == 0) {
        if (!queue_data_indication(self, fd, key, key_length, data, size, &client,
                                   client_length)) {
            return 0;
        }
    }
    else {
        unsigned char *frame = data - HEADER;
        put16(frame, (unsigned)channel);
        put16(frame + 2, (unsigned)size);
        queue(self, fd, frame, (size_t)(HEADER + size), &client, client_length);
    }
    self->to_clients++;
    self->bytes_to_clients += (unsigned long long)size;
    return 1;
}

/* The exception set, as a normalized exception object carrying its traceback; clears it. */
static PyObject *
take_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback != NULL) {
        PyException_SetTraceback(value, traceback);
    }
    Py_XDECREF(type);
    Py_XDECREF(traceback);
    return value;
#endif
}

/* After Python code called for a datagram from ``address`` (NULL if it could not be named)
 * raised: an Exception goes to on_error, 0; anything else (KeyboardInterrupt, SystemExit) stays
 * set, -1. Takes the reference to ``address``. */
static int
report(ChannelRelay *self, PyObject *address)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception)) {
        Py_XDECREF(address);
        return -1;
    }
    PyObject *value = take_exception();
    PyObject *on_error = self->on_error;
    Py_INCREF(on_error);
    PyObject *reported = PyObject_CallFunctionObjArgs(on_error, value,
                                                      address != NULL ? address : Py_None, NULL);
    if (reported == NULL) {
        PyErr_WriteUnraisable(on_error);
    }
    Py_DECREF(on_error);
    Py_XDECREF(address);
    Py_XDECREF(reported);
    Py_DECREF(value);
    return 0;
}

/* Give a datagram to its Python handler; an Exception it raises goes to on_error, with the
 * datagram's (host, port). 0, or -1 with anything else it raised still set. */
static int
hand_over(ChannelRelay *self, PyObject *received, const unsigned char *data, Py_ssize_t size,
          const struct sockaddr_storage *source)
{
    self->handed++;
    PyObject *address = source_address(source);
    PyObject *datagram = address == NULL
        ? NULL : PyBytes_FromStringAndSize((const char *)data, size);
    PyObject *result = datagram == NULL
        ? NULL : PyObject_CallFunctionObjArgs(received, datagram, address, NULL);
    Py_XDECREF(datagram);
    if (result == NULL) {
        return report(self, address);
    }
    Py_DECREF(result);
    Py_DECREF(address);
    return 0;
}

/* Whether ``message`` (``size`` bytes) is an Allocate request the core would challenge with
 * the same 401 whatever else it holds: no integrity, and only attributes that decode as the
 * core's do (REQUESTED-TRANSPORT, LIFETIME, DONT-FRAGMENT), then perhaps a FINGERPRINT that
 * checks (into ``*fingerprinted``). Anything else is Python's to answer. */
static int
challengeable(const unsigned char *message, Py_ssize_t size, int *fingerprinted)
{
    if (!whole_message(message, size, ALLOCATE_REQUEST)) {
        return 0;
    }
    *fingerprinted = 0;
    Py_ssize_t next = STUN_HEADER, position, length;
    unsigned type;
    int more;
    while ((more = next_attribute(message, size, &next, &type, &position, &length)) > 0) {
        if (good_fingerprint(message, size, type, position, length)) {
            *fingerprinted = 1;
        }
        else if (!((type == REQUESTED_TRANSPORT || type == LIFETIME) && length == 4)
                 && !(type == DONT_FRAGMENT && length == 0)) {
            return 0;
        }
    }
    return more == 0;
}

/* A request from ``source`` on ``fd`` that the live ``challenge`` covers (``since <= now <
 * until``), answered in place (``message`` has room after it): 1 once answered or refused by
 * admit(source, now); 0 for Python to answer (no such challenge, another request, an answer
 * over the amplification limit, admit failed with an Exception, which went to on_error); -1
 * with an exception set that admit raised and is no Exception. */
static int
answer_challenge(ChannelRelay *self, int fd, double now, unsigned char *message,
                 Py_ssize_t size, const struct sockaddr_storage *source)
{
    PyObject *challenge = self->challenge;
    int fingerprinted;
    if (challenge == NULL || !PyTuple_CheckExact(challenge) || PyTuple_GET_SIZE(challenge) != 6
            || lease_int(challenge, 0, 0, INT_MAX) != fd
            || !PyBytes_CheckExact(PyTuple_GET_ITEM(challenge, 1))
            || !PyFloat_CheckExact(PyTuple_GET_ITEM(challenge, 2))
            || !PyFloat_CheckExact(PyTuple_GET_ITEM(challenge, 3))
            || !(PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(challenge, 2)) <= now
                 && now < PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(challenge, 3)))
            || !PyFloat_CheckExact(PyTuple_GET_ITEM(challenge, 4))
            || !challengeable(message, size, &fingerprinted)) {
        return 0;
    }
    PyObject *attributes = PyTuple_GET_ITEM(challenge, 1);
    Py_ssize_t length = STUN_HEADER + PyBytes_GET_SIZE(attributes) + (fingerprinted ? 8 : 0);
    if (PyBytes_GET_SIZE(attributes) % 4 != 0 || PyBytes_GET_SIZE(attributes) > CHALLENGE_MAX
            || (double)length > PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(challenge, 4)) * (double)size) {
        return 0;
    }
    Py_INCREF(challenge);  /* admit() may lease another */
    PyObject *address = source_address(source);
    PyObject *when = address == NULL ? NULL : PyFloat_FromDouble(now);
    PyObject *admitted = when == NULL
        ? NULL : PyObject_CallFunctionObjArgs(PyTuple_GET_ITEM(challenge, 5), address, when, NULL);
    Py_XDECREF(when);
    int answer = admitted == NULL ? -1 : PyObject_IsTrue(admitted);
    Py_XDECREF(admitted);
    if (answer < 0) {
        Py_DECREF(challenge);
        return report(self, address);  /* the request is unchanged: Python's to answer */
    }
    Py_DECREF(address);
    if (answer) {  /* the request's cookie and transaction id stay */
        put16(message, ALLOCATE_ERROR);
        put16(message + 2, (unsigned)(length - STUN_HEADER));
        memcpy(message + STUN_HEADER, PyBytes_AS_STRING(attributes),
               (size_t)PyBytes_GET_SIZE(attributes));
        if (fingerprinted) {
            unsigned char *fingerprint = message + length - 8;
            put16(fingerprint, FINGERPRINT);
            put16(fingerprint + 2, 4);
            put32(fingerprint + 4, crc32_of(message, length - 8) ^ FINGERPRINT_XOR);
        }
        queue(self, fd, message, (size_t)length, source, address_length(source));
        self->challenges++;
    }
    Py_DECREF(challenge);
    return 1;
}

/* Read up to ``limit`` datagrams from ``fd`` at once: relay the leased ones, hand the others
 * to ``received``; if any reached Python or was answered here, send the queue (the answers
 * among it). How many were read, or -1 with an exception set (the clock's, or one a handler
 * raised that is no Exception). */
static int
read_socket(ChannelRelay *self, int fd, PyObject *leases, PyObject *clock, int limit,
            PyObject *received, int from_peers)
{
    double now;
    if (seconds_from(clock, &now) < 0) {
        return -1;
    }
    if (limit > SLOTS) {
        limit = SLOTS;
    }
    if (SLOTS - self->used < limit) {
        flush(self);
        self->used = 0;
    }
    int first = self->used;
    for (int i = 0; i < limit; i++) {
        int slot = first + i;
        self->in_iov[i].iov_base = self->slots[slot].bytes + HEADROOM;
        self->in_iov[i].iov_len = MAX_DATAGRAM;
        memset(&self->in[i].msg_hdr, 0, sizeof(self->in[i].msg_hdr));
        self->in[i].msg_hdr.msg_name = &self->sources[i];
        self->in[i].msg_hdr.msg_namelen = sizeof(self->sources[i]);
        self->in[i].msg_hdr.msg_iov = &self->in_iov[i];
        self->in[i].msg_hdr.msg_iovlen = 1;
    }
    int count;
    do {
        count = recvmmsg(fd, self->in, (unsigned int)limit, MSG_DONTWAIT, NULL);
    } while (count < 0 && errno == EINTR);
    if (count <= 0) {
        return 0;  /* EAGAIN, or an ICMP error reported for an earlier send */
    }
    self->used += count;
    unsigned char key[KEY_MAX];
    int answered = 0;  /* requests in the batch, maybe: what answers them leaves with it */
    for (int i = 0; i < count; i++) {
        unsigned char *data = self->slots[first + i].bytes + HEADROOM;
        Py_ssize_t size = (Py_ssize_t)self->in[i].msg_len;
        Py_ssize_t key_length = pack_source(&self->sources[i], key);
        if (key_length < 0) {
            continue;  /* no IP datagram: nothing the server can answer */
        }
        int relayed = 0;  /* a scoped address (key_length 0): only Python names it */
        if (key_length > 0 && from_peers) {
            relayed = relay_to_client(self, leases, now, key, key_length, data, size);
        }
        else if (key_length > 0 && size > 0 && data[0] == 0) {  /* STUN */
            relayed = relay_send(self, leases, now, key, key_length, data, size);
            if (!relayed) {
                relayed = answer_challenge(self, fd, now, data, size, &self->sources[i]);
                answered |= relayed > 0;
            }
        }
        else if (key_length > 0) {
            relayed = relay_to_peer(self, leases, now, key, key_length, data, size);
        }
        if (relayed < 0) {
            return -1;
        }
        if (!relayed) {
            answered = 1;
            if (hand_over(self, received, data, size, &self->sources[i]) < 0
                    || seconds_from(clock, &now) < 0) {
                return -1;
            }
        }
    }
    if (answered) {
        flush(self);
    }
    if (self->pending == 0) {
        self->used = 0;
    }
    return count;
}

/* The socket ``fd``'s entry in ``readers`` (a new reference), or NULL: none (no exception
 * set), or not a (dict, handler, bool) tuple (TypeError). */
static PyObject *
reader_of(PyObject *readers, int fd)
{
    PyObject *number = PyLong_FromLong(fd);
    if (number == NULL) {
        return NULL;
    }
    PyObject *entry = PyDict_GetItemWithError(readers, number);
    Py_DECREF(number);
    if (entry == NULL) {
        return NULL;
    }
    if (!PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != 3
            || !PyDict_CheckExact(PyTuple_GET_ITEM(entry, 0))) {
        PyErr_Format(PyExc_TypeError, "reader of %d: not a (dict, handler, bool) tuple", fd);
        return NULL;
    }
    Py_INCREF(entry);
    return entry;
}

/* One pass over the sockets ``epoll_fd`` reports ready (see drain()), adding the datagrams read
 * to ``*total``; what it relayed and send() queued is sent before it returns. 0, or -1 with an
 * exception set. */
static int
drain_ready(ChannelRelay *self, int epoll_fd, PyObject *readers, PyObject *clock, int budget,
            int per_socket, int *total)
{
    struct epoll_event events[READY_MAX];
    int spent = 0;  /* the budget spent, a turn at least per socket */
    int failed = 0;  /* an exception is set */
    self->passing = 1;
    while (spent < budget && !failed) {
        int wanted = budget - spent < READY_MAX ? budget - spent : READY_MAX;
        int ready = epoll_wait(epoll_fd, events, wanted, 0);
        if (ready < 0 && errno == EINTR) {
            continue;
        }
        if (ready < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            failed = 1;
            break;
        }
        if (ready == 0) {
            break;
        }
        for (int i = 0; i < ready; i++) {
            int fd = events[i].data.fd;
            PyObject *entry = reader_of(readers, fd);
            if (entry == NULL) {
                if (PyErr_Occurred()) {
                    failed = 1;
                    break;
                }
                spent++;  /* removed by an earlier datagram's handler */
                continue;
            }
            int from_peers = PyObject_IsTrue(PyTuple_GET_ITEM(entry, 2));
            int count = from_peers < 0 ? 0 : read_socket(
                self, fd, PyTuple_GET_ITEM(entry, 0), clock, per_socket,
                PyTuple_GET_ITEM(entry, 1), from_peers);
            Py_DECREF(entry);
            if (from_peers < 0 || count < 0) {
                failed = 1;
                break;
            }
            *total += count;
            spent += count > 0 ? count : 1;
        }
    }
    self->passing = 0;
    flush(self);
    self->used = 0;
    return failed ? -1 : 0;
}

static double
monotonic(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + now.tv_nsec / 1e9;
}

/* Wait, without the GIL, until ``wait_fd`` reports ready descriptors or ``deadline`` passes:
 * 1 if ``epoll_fd`` is the only one ready, else 0 (the caller's event loop has work). */
static int
only_mine_ready(int wait_fd, int epoll_fd, double deadline)
{
    double left = deadline - monotonic();
    if (!(left > 0)) {  /* NaN too */
        return 0;
    }
    int milliseconds = left >= INT_MAX / 1000 ? INT_MAX : (int)(left * 1000.0) + 1;
    struct epoll_event events[READY_MAX];
    int ready;
    Py_BEGIN_ALLOW_THREADS
    ready = epoll_wait(wait_fd, events, READY_MAX, milliseconds);
    Py_END_ALLOW_THREADS
    if (ready <= 0) {
        return 0;  /* the deadline; a signal, which Python must see; or an error the loop sees */
    }
    for (int i = 0; i < ready; i++) {
        if (events[i].data.fd != epoll_fd) {
            return 0;
        }
    }
    return 1;
}

/* When drain() must stop lingering, into ``deadline``: monotonic() plus the seconds
 * ``linger()`` gives. 0, or -1 with an exception set. */
static int
ask_deadline(PyObject *linger, double *deadline)
{
    double seconds;
    if (seconds_from(linger, &seconds) < 0) {
        return -1;
    }
    *deadline = monotonic() + seconds;
    return 0;
}

static PyObject *
ChannelRelay_drain(ChannelRelay *self, PyObject *args)
{
    int epoll_fd, budget, per_socket, wait_fd = -1;
    PyObject *readers, *clock, *linger = NULL, *calls = NULL;
    if (!PyArg_ParseTuple(args, "iO!Oii|iOO!:drain", &epoll_fd, &PyDict_Type, &readers, &clock,
                          &budget, &per_socket, &wait_fd, &linger, &PyList_Type, &calls)) {
        return NULL;
    }
    if (self->draining) {
        PyErr_SetString(PyExc_RuntimeError,
                        "drain is running already (called from a handler or another thread)");
        return NULL;
    }
    if (self->slots == NULL || self->on_error == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "ChannelRelay.__init__ was not called");
        return NULL;
    }
    if (per_socket < 1) {
        PyErr_SetString(PyExc_ValueError, "per_socket must be at least 1");
        return NULL;
    }
    if (wait_fd >= 0 && (wait_fd == epoll_fd || calls == NULL
                         || linger == NULL || !PyCallable_Check(linger))) {
        PyErr_SetString(PyExc_ValueError,
                        "lingering takes the event loop's epoll descriptor, linger and calls");
        return NULL;
    }
    self->draining = 1;
    self->handed = 0;
    int total = 0;
    double deadline = 0;
    int failed = (wait_fd >= 0 && ask_deadline(linger, &deadline) < 0)
        || drain_ready(self, epoll_fd, readers, clock, budget, per_socket, &total) < 0;
    /* Lingering: while no call from another thread waits and no other descriptor of the event
     * loop (its waker, a signal's, a listener's) is ready, go on without a return to it, until
     * the deadline linger() gave, asked again after Python handlers ran (they may have set a
     * timer). A signal's Python handler runs between passes. */
    while (!failed && wait_fd >= 0 && PyList_GET_SIZE(calls) == 0) {
        if (self->handed > 0) {
            self->handed = 0;
            if (ask_deadline(linger, &deadline) < 0) {
                failed = 1;
                break;
            }
        }
        if (!only_mine_ready(wait_fd, epoll_fd, deadline)) {
            break;
        }
        failed = PyErr_CheckSignals() < 0 || (PyList_GET_SIZE(calls) == 0 && drain_ready(
            self, epoll_fd, readers, clock, budget, per_socket, &total) < 0);
    }
    self->draining = 0;
    return failed ? NULL : PyLong_FromLong(total);
}

/* ``address``, a (host, port) tuple of a numeric IPv4 or unscoped IPv6 address, as a socket
 * address: its length, or 0 if it is no such thing. */
static socklen_t
destination_of(PyObject *address, struct sockaddr_storage *destination)
{
    if (!PyTuple_CheckExact(address) || PyTuple_GET_SIZE(address) != 2
            || !PyUnicode_CheckExact(PyTuple_GET_ITEM(address, 0))
            || !PyLong_CheckExact(PyTuple_GET_ITEM(address, 1))) {
        return 0;
    }
    Py_ssize_t size;
    const char *host = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(address, 0), &size);
    long port = PyLong_AsLong(PyTuple_GET_ITEM(address, 1));
    if (host == NULL || strlen(host) != (size_t)size || port < 0 || port > 0xFFFF) {
        PyErr_Clear();
        return 0;
    }
    memset(destination, 0, sizeof(*destination));
    struct sockaddr_in *v4 = (struct sockaddr_in *)destination;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        return sizeof(*v4);
    }
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)destination;
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        return sizeof(*v6);
    }
    return 0;
}

static PyObject *
ChannelRelay_send(ChannelRelay *self, PyObject *args)
{
    int fd;
    PyObject *data, *address;
    if (!PyArg_ParseTuple(args, "iOO:send", &fd, &data, &address)) {
        return NULL;
    }
    struct sockaddr_storage destination;
    socklen_t length;
    if (!self->passing || fd < 0 || !PyBytes_CheckExact(data)
            || (length = destination_of(address, &destination)) == 0) {
        Py_RETURN_FALSE;
    }
    queue(self, fd, (unsigned char *)PyBytes_AS_STRING(data), (size_t)PyBytes_GET_SIZE(data),
          &destination, length);
    Py_INCREF(data);
    self->held[self->pending - 1] = data;
    Py_RETURN_TRUE;
}

static PyObject *
ChannelRelay_flush(ChannelRelay *self, PyObject *args)
{
    int fd;
    if (!PyArg_ParseTuple(args, "i:flush", &fd)) {
        return NULL;
    }
    for (int i = 0; i < self->pending; i++) {
        if (self->out_fd[i] == fd) {
            flush(self);
            break;
        }
    }
    Py_RETURN_NONE;
}

static PyMethodDef ChannelRelay_methods[] = {
    {"send", (PyCFunction)ChannelRelay_send, METH_VARARGS,
     "send(fd, data, (host, port)) -> queued\n\n"
     "While drain() reads (in its handlers), queue data (bytes) for the socket fd to send to\n"
     "the numeric address (host, port) with what it relays, in order, and return True; the\n"
     "queue leaves before drain() returns (a datagram the kernel refuses counts in\n"
     "send_errors). Otherwise (not reading, data of another type, a scoped or non-numeric\n"
     "host) return False: the caller sends it."},
    {"flush", (PyCFunction)ChannelRelay_flush, METH_VARARGS,
     "flush(fd)\n\n"
     "Send what is queued now if any of it leaves by the socket fd: before it is closed."},
    {"drain", (PyCFunction)ChannelRelay_drain, METH_VARARGS,
     "drain(epoll_fd, readers, clock, budget, per_socket) -> datagrams read\n\n"
     "Read the sockets the epoll object reports ready, up to per_socket datagrams from one at\n"
     "a time, until none is ready or about budget datagrams were read (a ready socket with\n"
     "nothing to read counts as one). readers maps each socket's descriptor to (leases,\n"
     "handler, from_peers): leased datagrams are relayed, the others handed to\n"
     "handler(data, (host, port)); an Exception a handler raises goes to\n"
     "on_error(exception, (host, port)). Leases\n"
     "are valid while clock() is before their end.\n\n"
     "drain(..., wait_fd, linger, calls) lingers: wait_fd is the epoll object of the event\n"
     "loop that watches epoll_fd, calls the list other threads queue its work on, linger() how\n"
     "many seconds it may stay (until the loop's next timer), asked first and again after\n"
     "handlers ran. While calls is empty and only epoll_fd is ready at wait_fd, it drains\n"
     "again (a new budget each pass), without the GIL while it waits; it returns as soon as the\n"
     "loop has anything else to do."},
    {NULL, NULL, 0, NULL},
};

static int
ChannelRelay_init(ChannelRelay *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"on_error", NULL};
    PyObject *on_error;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O:ChannelRelay", keywords, &on_error)) {
        return -1;
    }
    if (!PyCallable_Check(on_error)) {
        PyErr_SetString(PyExc_TypeError, "on_error must be callable");
        return -1;
    }
    self->random_used = sizeof(self->random);  /* drawn when first needed */
    if (self->slots == NULL) {
        self->slots = PyMem_Calloc(SLOTS, sizeof(Slot));
        if (self->slots == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    Py_INCREF(on_error);
    Py_XSETREF(self->on_error, on_error);
    return 0;
}

static int
ChannelRelay_traverse(ChannelRelay *self, visitproc visit, void *arg)
{
    Py_VISIT(self->on_error);
    Py_VISIT(self->challenge);
    return 0;
}

static int
ChannelRelay_clear(ChannelRelay *self)
{
    for (int i = 0; i < SLOTS; i++) {
        Py_CLEAR(self->held[i]);
    }
    self->pending = 0;
    Py_CLEAR(self->on_error);
    Py_CLEAR(self->challenge);
    return 0;
}

static void
ChannelRelay_dealloc(ChannelRelay *self)
{
    PyObject_GC_UnTrack(self);
    ChannelRelay_clear(self);
    PyMem_Free(self->slots);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef ChannelRelay_members[] = {
    {"to_peers", T_ULONGLONG, offsetof(ChannelRelay, to_peers), READONLY,
     "ChannelData relayed to peers"},
    {"to_clients", T_ULONGLONG, offsetof(ChannelRelay, to_clients), READONLY,
     "peer datagrams relayed to clients as ChannelData"},
    {"bytes_to_peers", T_ULONGLONG, offsetof(ChannelRelay, bytes_to_peers), READONLY,
     "application bytes relayed to peers"},
    {"bytes_to_clients", T_ULONGLONG, offsetof(ChannelRelay, bytes_to_clients), READONLY,
     "application bytes relayed to clients"},
    {"send_errors", T_ULONGLONG, offsetof(ChannelRelay, send_errors), READONLY,
     "queued datagrams the kernel refused (dropped, as UDP may)"},
    {"challenges", T_ULONGLONG, offsetof(ChannelRelay, challenges), READONLY,
     "Allocate requests answered with the leased challenge"},
    {"challenge", T_OBJECT, offsetof(ChannelRelay, challenge), 0,
     "None, or the 401 leased to the listening socket: (its descriptor, the answer's\n"
     "attributes after the header, since, until, amplification limit, admit). While\n"
     "since <= clock() < until, an Allocate request on that socket with no integrity and\n"
     "only REQUESTED-TRANSPORT, LIFETIME, DONT-FRAGMENT and FINGERPRINT is answered with that\n"
     "error response (and a FINGERPRINT if it had one), if admit((host, port), now) is\n"
     "true and the answer is no more than the limit times the request."},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject ChannelRelayType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "vw.turn._channelrelay.ChannelRelay",
    .tp_doc = PyDoc_STR("ChannelRelay(on_error)\n\n"
                        "Relays leased media between UDP sockets; counts what it relays."),
    .tp_basicsize = sizeof(ChannelRelay),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)ChannelRelay_init,
    .tp_dealloc = (destructor)ChannelRelay_dealloc,
    .tp_traverse = (traverseproc)ChannelRelay_traverse,
    .tp_clear = (inquiry)ChannelRelay_clear,
    .tp_methods = ChannelRelay_methods,
    .tp_members = ChannelRelay_members,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "vw.turn._channelrelay",
    .m_doc = PyDoc_STR("vw-turn's compiled media relay loop."),
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__channelrelay(void)
{
    if (PyType_Ready(&ChannelRelayType) < 0) {
        return NULL;
    }
    crc_table_init();
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    Py_INCREF(&ChannelRelayType);
    if (PyModule_AddObject(m, "ChannelRelay", (PyObject *)&ChannelRelayType) < 0) {
        Py_DECREF(&ChannelRelayType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
