# AES-128-CCM (RFC 3610) built on a single-block AES encryptor.
#
# Runs unchanged on MicroPython and CPython: ESP32's `cryptolib` offers only
# AES-ECB (and CBC), so CCM is assembled here from the block function. The
# frames are short (a few blocks), so a pure implementation costs little.
#
# Parameters fixed by BTHome v2: 13-byte nonce (L = 2), 4-byte tag (M = 4),
# no associated data.

try:
    import cryptolib  # MicroPython

    def block_encryptor(key):
        """Return a function that encrypts one 16-byte block with `key`."""
        return cryptolib.aes(bytes(key), 1).encrypt

except ImportError:  # CPython
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    def block_encryptor(key):
        """Return a function that encrypts one 16-byte block with `key`."""
        return Cipher(algorithms.AES(bytes(key)), modes.ECB()).encryptor().update


TAG_LEN = 4
NONCE_LEN = 13


class AuthError(ValueError):
    """The message authentication code does not match: forged or wrong key."""


def _check(key, nonce):
    if len(key) != 16:
        raise ValueError("key must be 16 bytes")
    if len(nonce) != NONCE_LEN:
        raise ValueError("nonce must be 13 bytes")


def _counter_block(nonce, i):
    # A_i: flags (L' = 1), nonce, 16-bit big-endian block index
    return bytes((0x01,)) + bytes(nonce) + bytes(((i >> 8) & 0xFF, i & 0xFF))


def _xor_into(buf, data, start):
    for j in range(len(data)):
        buf[start + j] ^= data[j]


def _mac(enc, nonce, msg):
    if len(msg) > 0xFFFF:
        raise ValueError("message too long")
    # B0: flags (Adata = 0, M' = (M - 2) / 2, L' = 1), nonce, message length
    b0 = bytes((((TAG_LEN - 2) // 2) << 3 | 0x01,)) + bytes(nonce)
    b0 += bytes(((len(msg) >> 8) & 0xFF, len(msg) & 0xFF))
    x = bytearray(enc(b0))
    for off in range(0, len(msg), 16):
        _xor_into(x, msg[off:off + 16], 0)
        x = bytearray(enc(bytes(x)))
    return bytes(x[:TAG_LEN])


def _ctr(enc, nonce, data):
    out = bytearray(data)
    for off in range(0, len(data), 16):
        stream = enc(_counter_block(nonce, off // 16 + 1))
        _xor_into(out, stream[:min(16, len(data) - off)], off)
    return bytes(out)


def _tag_mask(enc, nonce, tag):
    s0 = enc(_counter_block(nonce, 0))
    return bytes(tag[j] ^ s0[j] for j in range(TAG_LEN))


def encrypt(key, nonce, plaintext):
    """Return (ciphertext, tag) for `plaintext` under `key` and `nonce`."""
    _check(key, nonce)
    enc = block_encryptor(key)
    tag = _mac(enc, nonce, bytes(plaintext))
    return _ctr(enc, nonce, plaintext), _tag_mask(enc, nonce, tag)


def decrypt(key, nonce, ciphertext, tag):
    """Return the plaintext, or raise AuthError when `tag` does not verify."""
    _check(key, nonce)
    if len(tag) != TAG_LEN:
        raise AuthError("tag must be 4 bytes")
    enc = block_encryptor(key)
    plaintext = _ctr(enc, nonce, ciphertext)
    expected = _tag_mask(enc, nonce, _mac(enc, nonce, plaintext))
    # Compare every byte so the time taken does not tell where they differ.
    diff = 0
    for j in range(TAG_LEN):
        diff |= expected[j] ^ tag[j]
    if diff:
        raise AuthError("MIC mismatch")
    return plaintext
