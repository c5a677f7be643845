"""Connections over real sockets: :class:`Listener`, :func:`Client`, the authentication
handshake and address helpers of :mod:`multiprocessing.connection` (re-exported by
:mod:`gilfree.connection`, which imports this module on first use).

The bytes on the wire are the standard library's (its framing, pickle for objects, its HMAC
challenge/response), so a gilfree ``Client`` can talk to Python's own ``Listener`` and the
other way round. Messages are framed, sent and received in C (``gilfree._core.SocketConnection``
over ``src/core/sock.c``); sockets are made, bound and connected here.

Handshake: the challenge/response of Python 3.12+ (``{sha256}`` challenges, and answers to
``{digest}`` challenges), which talks to 3.11's legacy HMAC-MD5 peers in both directions, with
``hmac.compare_digest`` for the check. Differences from the standard library, all on failure
paths: a wrong key or a peer that does not follow the handshake raises
:class:`~multiprocessing.AuthenticationError` (never ``AssertionError``); each side waits at
most :data:`HANDSHAKE_TIMEOUT` seconds for the other's handshake message (a client waits
:data:`CHALLENGE_TIMEOUT` for the first one: a busy server may accept late); a connection whose
handshake failed is closed; an error binding or connecting names the address; ``Client``
tries once and gives up after :data:`CONNECTION_TIMEOUT` seconds.
"""

import hmac
import os
import socket
import tempfile

from multiprocessing import util as _util
from multiprocessing.context import AuthenticationError

from gilfree import _core

__all__ = ["Client", "Listener", "SocketConnection", "MessageTruncatedError", "families",
           "default_family", "address_type", "arbitrary_address", "answer_challenge",
           "deliver_challenge", "XmlListener", "XmlClient"]

BUFSIZE = 8192
#: Seconds ``Client`` waits for a connection to be established.
CONNECTION_TIMEOUT = 20.0
#: Seconds each side of the authentication handshake waits for the other's next message...
HANDSHAKE_TIMEOUT = 20.0
#: ... except a client waiting for the server's challenge: a busy server may accept late (a
#: full TCP backlog delays the accept by SYN-ACK retries, about a minute at most).
CHALLENGE_TIMEOUT = 120.0

MESSAGE_LENGTH = 40  # random bytes in a challenge (as Python 3.12+)
CHALLENGE = b"#CHALLENGE#"
WELCOME = b"#WELCOME#"
FAILURE = b"#FAILURE#"
_ALLOWED_DIGESTS = frozenset({b"md5", b"sha256", b"sha384", b"sha3_256", b"sha3_384"})
_MAX_DIGEST_LEN = max(len(d) for d in _ALLOWED_DIGESTS)
_LEGACY_LENGTHS = (20, 16)  # a 3.11 challenge (20 random bytes), a raw HMAC-MD5 answer

MessageTruncatedError = _core.MessageTruncatedError

default_family = "AF_UNIX"
families = ["AF_INET", "AF_UNIX"]


class SocketConnection(_core.SocketConnection):
    """A connection over a socket (or any stream file descriptor), with the API of
    :class:`multiprocessing.connection.Connection`: ``send``/``recv`` (pickle),
    ``send_bytes``/``recv_bytes``/``recv_bytes_into``, ``poll``, ``fileno``, ``close``,
    ``closed``/``readable``/``writable``, and ``with``. It owns the fd. Selectable with
    :func:`gilfree.connection.wait`; picklable to another process as the standard library's
    connections are (the fd is duplicated for it). ``max_message_size`` bounds what a peer may
    announce (``OSError`` before anything is allocated)."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, exc_tb):
        self.close()

    def __repr__(self):
        if self.closed:
            return "<gilfree.connection.SocketConnection closed at %#x>" % id(self)
        return "<gilfree.connection.SocketConnection fd=%d at %#x>" % (self.fileno(), id(self))

    def __reduce__(self):
        from multiprocessing import reduction
        return _rebuild_connection, (reduction.DupFd(self.fileno()), self.readable,
                                     self.writable)


def _rebuild_connection(df, readable, writable):
    return SocketConnection(df.detach(), readable, writable)


# ------------------------------------------------------------------ addresses

def arbitrary_address(family):
    """A fresh address for `family`: ('localhost', 0) for AF_INET, a new path in a private
    temporary directory (mode 0700, removed at exit) for AF_UNIX."""
    if family == "AF_INET":
        return ("localhost", 0)
    if family == "AF_UNIX":
        return tempfile.mktemp(prefix="listener-", dir=_util.get_temp_dir())
    raise ValueError("unrecognized family %r" % (family,))


def address_type(address):
    """The family of `address`: 'AF_INET' for a (host, port) tuple, 'AF_UNIX' for a path or
    a Linux abstract name ('\\0name', str or bytes), 'AF_PIPE' for a Windows pipe name."""
    if type(address) == tuple:
        return "AF_INET"
    if type(address) is str and address.startswith("\\\\"):
        return "AF_PIPE"
    if type(address) is str or (type(address) is bytes and address[:1] == b"\0"):
        return "AF_UNIX"
    raise ValueError("address type of %r unrecognized" % (address,))


def _check_args(family, authkey):
    if family not in families:
        raise ValueError("Family %s is not recognized." % family)
    if authkey is not None and not isinstance(authkey, bytes):
        raise TypeError("authkey should be a byte string")


def _authenticated(c, authkey, server):
    """c after the handshake under `authkey` (the server challenges first); closed if the
    handshake fails."""
    try:
        if server:  # the client is waiting for this challenge: it answers promptly
            deliver_challenge(c, authkey)
            answer_challenge(c, authkey, HANDSHAKE_TIMEOUT)
        else:  # the server may not have accepted us yet
            answer_challenge(c, authkey, CHALLENGE_TIMEOUT)
            deliver_challenge(c, authkey)
    except BaseException:
        c.close()
        raise
    return c


def _with_address(exc, address):
    """`exc` (an OSError from bind/connect) again, naming the address."""
    if exc.errno is None:
        return type(exc)("%s (address %r)" % (exc, address))
    return type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno), address)


def _new_socket(family, address):
    af = socket.AF_UNIX if family == "AF_UNIX" else socket.AF_INET
    if af == socket.AF_INET and ":" in str(address[0]):
        af = socket.AF_INET6  # ('::1', port): the standard library would fail here
    return socket.socket(af, socket.SOCK_STREAM)


def _nodelay(s):
    """TCP_NODELAY on a TCP socket. Every message leaves in one write, so this costs no extra
    packets; without it the handshake's last message followed by the first request waits for
    the peer's delayed ACK (Nagle): about 40 ms per connection, the standard library's case."""
    if s.family != socket.AF_UNIX:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# ------------------------------------------------------------------ listener and client

class Listener:
    """A bound, listening socket (AF_INET or AF_UNIX, abstract names included) that accepts
    :class:`SocketConnection` objects, as :class:`multiprocessing.connection.Listener`.
    With an `authkey`, :meth:`accept` runs the HMAC handshake (both ways) first."""

    def __init__(self, address=None, family=None, backlog=1, authkey=None):
        family = family or (address and address_type(address)) or default_family
        address = address or arbitrary_address(family)
        _check_args(family, authkey)
        s = _new_socket(family, address)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setblocking(True)
            try:
                s.bind(address)
            except OSError as e:
                raise _with_address(e, address) from None
            s.listen(backlog)
            self._address = s.getsockname()
        except BaseException:
            s.close()
            raise
        self._socket = s
        self._family = family
        self._authkey = authkey
        self._last_accepted = None
        if family == "AF_UNIX" and not _util.is_abstract_socket_namespace(address):
            self._unlink = _util.Finalize(self, os.unlink, args=(address,), exitpriority=0)
        else:
            self._unlink = None

    def accept(self):
        """Accept a connection (and authenticate it when the listener has an authkey).
        Raises AuthenticationError for a wrong key or a peer that does not follow the
        handshake, EOFError if the peer hung up during it (the connection is closed then)."""
        if self._socket is None:
            raise OSError("listener is closed")
        s, self._last_accepted = self._socket.accept()
        s.setblocking(True)
        _nodelay(s)
        c = SocketConnection(s.detach())
        return _authenticated(c, self._authkey, True) if self._authkey else c

    def close(self):
        """Close the listening socket; an AF_UNIX path is removed."""
        s, self._socket = self._socket, None
        try:
            if s is not None:
                s.close()
        finally:
            unlink, self._unlink = self._unlink, None
            if unlink is not None:
                unlink()

    @property
    def address(self):
        """The address the listener is bound to (with the real port for port 0)."""
        return self._address

    @property
    def last_accepted(self):
        """The peer address of the last accepted connection."""
        return self._last_accepted

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, exc_tb):
        self.close()

    def __repr__(self):
        return "<gilfree.connection.Listener %s %r>" % (
            "closed" if self._socket is None else self._family, self._address)


def Client(address, family=None, authkey=None):
    """Connect to the Listener at `address` and return a :class:`SocketConnection` (after
    the HMAC handshake when an `authkey` is given). Tries once: an unreachable address raises
    the OSError of connect() naming the address (ConnectionRefusedError, FileNotFoundError,
    TimeoutError after CONNECTION_TIMEOUT seconds over TCP, ...). A full AF_UNIX backlog is
    waited for, as by the standard library."""
    family = family or address_type(address)
    _check_args(family, authkey)
    s = _new_socket(family, address)
    try:
        # TCP: give up after CONNECTION_TIMEOUT. AF_UNIX: block, as the standard library does
        # (a non-blocking connect to a full backlog fails with EAGAIN at once instead of
        # waiting for the server to accept).
        s.settimeout(CONNECTION_TIMEOUT if s.family != socket.AF_UNIX else None)
        try:
            s.connect(address)
        except OSError as e:
            raise _with_address(e, address) from None
        s.setblocking(True)
        _nodelay(s)
    except BaseException:
        s.close()
        raise
    c = SocketConnection(s.detach())
    return _authenticated(c, authkey, False) if authkey is not None else c


# ------------------------------------------------------------------ authentication

_HUNG_UP = "the peer closed the connection during the authentication handshake"


def _recv_handshake(connection, timeout=None):
    """One handshake message (at most 256 bytes) within `timeout` (default HANDSHAKE_TIMEOUT)
    seconds. A peer that hangs up gives EOFError; one that sends too much or nothing,
    AuthenticationError."""
    timeout = HANDSHAKE_TIMEOUT if timeout is None else timeout
    timed = getattr(connection, "_recv_bytes_timed", None)
    try:
        if timed is None:
            return connection.recv_bytes(256)
        return timed(256, timeout)
    except TimeoutError:
        raise AuthenticationError("no handshake message from the peer within %s s"
                                  % timeout) from None
    except (EOFError, ConnectionResetError):
        raise EOFError(_HUNG_UP) from None
    except OSError as e:  # e.g. a message longer than 256 bytes
        raise AuthenticationError("malformed handshake message: %s" % e) from e


def _send_handshake(connection, data):
    try:
        connection.send_bytes(data)
    except (BrokenPipeError, ConnectionResetError):
        raise EOFError(_HUNG_UP) from None


def _digest_and_payload(message):
    """(digest name or '' for legacy MD5, payload) of a challenge or an answer."""
    if len(message) in _LEGACY_LENGTHS:
        return "", message
    if message.startswith(b"{"):
        curly = message.find(b"}", 1, _MAX_DIGEST_LEN + 2)
        if curly > 0 and message[1:curly] in _ALLOWED_DIGESTS:
            return message[1:curly].decode("ascii"), message[curly + 1:]
    raise AuthenticationError("unsupported message length, missing digest prefix, or "
                              "unsupported digest: %r" % (message[:40],))


def _create_response(authkey, message):
    digest = _digest_and_payload(message)[0]
    if not digest:  # a legacy (3.11 and older) peer: raw HMAC-MD5
        try:
            return hmac.new(authkey, message, "md5").digest()
        except ValueError:  # no MD5 (FIPS): the modern answer, which such a peer refuses
            digest = "sha256"
    return b"{%s}%s" % (digest.encode("ascii"), hmac.new(authkey, message, digest).digest())


def _verify_challenge(authkey, message, response):
    digest, mac = _digest_and_payload(response)
    digest = digest or "md5"
    try:
        expected = hmac.new(authkey, message, digest).digest()
    except ValueError:
        raise AuthenticationError("digest %r unsupported" % digest) from None
    if len(expected) != len(mac) or not hmac.compare_digest(expected, mac):
        raise AuthenticationError("digest received was wrong")


def deliver_challenge(connection, authkey, digest_name="sha256"):
    """Send a random challenge over `connection` and check the peer's HMAC of it under
    `authkey`; tell the peer the outcome. Raises AuthenticationError if it is wrong."""
    if not isinstance(authkey, bytes):
        raise ValueError("Authkey must be bytes, not {0!s}".format(type(authkey)))
    message = b"{%s}%s" % (digest_name.encode("ascii"), os.urandom(MESSAGE_LENGTH))
    _send_handshake(connection, CHALLENGE + message)
    response = _recv_handshake(connection)
    try:
        _verify_challenge(authkey, message, response)
    except AuthenticationError:
        try:
            connection.send_bytes(FAILURE)
        except OSError:
            pass
        raise
    _send_handshake(connection, WELCOME)


def answer_challenge(connection, authkey, _first_timeout=None):
    """Answer the peer's challenge with its HMAC under `authkey` (legacy MD5 or the digest
    the challenge names). Raises AuthenticationError if the peer rejects it. Waits up to
    CHALLENGE_TIMEOUT seconds for the challenge."""
    if not isinstance(authkey, bytes):
        raise ValueError("Authkey must be bytes, not {0!s}".format(type(authkey)))
    message = _recv_handshake(connection, _first_timeout or CHALLENGE_TIMEOUT)
    if not message.startswith(CHALLENGE):
        raise AuthenticationError("protocol error, expected a challenge: %r" % (message[:40],))
    message = message[len(CHALLENGE):]
    if len(message) < 20:
        raise AuthenticationError("challenge too short: %d bytes" % len(message))
    _send_handshake(connection, _create_response(authkey, message))
    if _recv_handshake(connection) != WELCOME:
        raise AuthenticationError("digest sent was rejected")


# ------------------------------------------------------------------ xmlrpc serialization

class ConnectionWrapper:
    """A connection whose send/recv use other dumps/loads (the xmlrpclib serializer)."""

    def __init__(self, conn, dumps, loads):
        self._conn = conn
        self._dumps = dumps
        self._loads = loads
        for attr in ("fileno", "close", "poll", "recv_bytes", "send_bytes"):
            setattr(self, attr, getattr(conn, attr))
        if hasattr(conn, "_recv_bytes_timed"):  # the handshake's timeouts work through it
            self._recv_bytes_timed = conn._recv_bytes_timed

    def send(self, obj):
        """Send obj encoded with this wrapper's dumps."""
        self._conn.send_bytes(self._dumps(obj))

    def recv(self):
        """Receive an object encoded with the peer's dumps."""
        return self._loads(self._conn.recv_bytes())

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, exc_tb):
        self.close()


def _xml_dumps(obj):
    import xmlrpc.client
    return xmlrpc.client.dumps((obj,), None, None, None, 1).encode("utf-8")


def _xml_loads(s):
    import xmlrpc.client
    (obj,), _method = xmlrpc.client.loads(s.decode("utf-8"))
    return obj


class XmlListener(Listener):
    """A Listener whose connections send and receive with xmlrpc instead of pickle."""

    def accept(self):
        """Accept a connection, wrapped to use the xmlrpc serializer."""
        return ConnectionWrapper(Listener.accept(self), _xml_dumps, _xml_loads)


def XmlClient(*args, **kwds):
    """A Client whose connection sends and receives with xmlrpc instead of pickle."""
    return ConnectionWrapper(Client(*args, **kwds), _xml_dumps, _xml_loads)

