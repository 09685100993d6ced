//! Kafka's variable-length integers (zig-zag, 7 bits per byte, little end
//! first) and a bounds-checked cursor over untrusted bytes.

use crate::RecordsError;

/// Longest encoding of a 32-bit varint.
pub(crate) const VARINT_BYTES_MAX: usize = 5;
/// Longest encoding of a 64-bit varlong.
pub(crate) const VARLONG_BYTES_MAX: usize = 10;

/// A read position in a byte slice. Every read checks the bytes remaining.
#[derive(Clone, Debug)]
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Cursor<'a> {
        Cursor { buf, pos: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    #[inline]
    pub(crate) fn read_i8(&mut self, what: &'static str) -> Result<i8, RecordsError> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b as i8)
            }
            None => Err(invalid(format_args!(
                "{what}: no bytes left at byte {}",
                self.pos
            ))),
        }
    }

    /// Takes `n` bytes.
    #[inline]
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], RecordsError> {
        if n > self.remaining() {
            return Err(invalid(format_args!(
                "{what}: {n} bytes claimed at byte {}, {} remain",
                self.pos,
                self.remaining()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Reads an unsigned LEB128 value of at most `max_bytes` (>= 2) bytes;
    /// one- and two-byte values (the common cases) stay inline.
    #[inline(always)]
    fn read_unsigned(&mut self, max_bytes: usize, what: &'static str) -> Result<u64, RecordsError> {
        if let Some(&b0) = self.buf.get(self.pos) {
            if b0 & 0x80 == 0 {
                self.pos += 1;
                return Ok(u64::from(b0));
            }
            if let Some(&b1) = self.buf.get(self.pos + 1) {
                if b1 & 0x80 == 0 {
                    self.pos += 2;
                    return Ok(u64::from(b0 & 0x7f) | (u64::from(b1) << 7));
                }
            }
        }
        self.read_unsigned_multi(max_bytes, what)
    }

    /// Bits beyond 64 in the last byte are dropped (as Kafka's reader does).
    #[inline(never)]
    fn read_unsigned_multi(
        &mut self,
        max_bytes: usize,
        what: &'static str,
    ) -> Result<u64, RecordsError> {
        let mut value: u64 = 0;
        for i in 0..max_bytes {
            let Some(&b) = self.buf.get(self.pos + i) else {
                return Err(invalid(format_args!(
                    "{what}: varint runs past the end at byte {}",
                    self.pos
                )));
            };
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                self.pos += i + 1;
                return Ok(value);
            }
        }
        Err(invalid(format_args!(
            "{what}: varint longer than {max_bytes} bytes at byte {}",
            self.pos
        )))
    }

    /// A zig-zag encoded 32-bit varint.
    #[inline(always)]
    pub(crate) fn read_varint(&mut self, what: &'static str) -> Result<i32, RecordsError> {
        let raw = self.read_unsigned(VARINT_BYTES_MAX, what)? as u32;
        Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
    }

    /// A zig-zag encoded 64-bit varlong.
    #[inline(always)]
    pub(crate) fn read_varlong(&mut self, what: &'static str) -> Result<i64, RecordsError> {
        let raw = self.read_unsigned(VARLONG_BYTES_MAX, what)?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }
}

/// Builds an `InvalidRecord` error off the hot path.
#[cold]
#[inline(never)]
pub(crate) fn invalid(args: std::fmt::Arguments<'_>) -> RecordsError {
    RecordsError::InvalidRecord(args.to_string())
}

/// Appends a zig-zag 32-bit varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, v: i32) {
    put_unsigned(out, u64::from(((v << 1) ^ (v >> 31)) as u32));
}

/// Appends a zig-zag 64-bit varlong.
pub(crate) fn put_varlong(out: &mut Vec<u8>, v: i64) {
    put_unsigned(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_unsigned(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_encodings() {
        // Kafka's zig-zag: 0 -> 00, -1 -> 01, 1 -> 02, 63 -> 7e, -64 -> 7f, 64 -> 80 01.
        let cases: &[(i32, &[u8])] = &[
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (63, &[0x7e]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (i32::MAX, &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
            (i32::MIN, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ];
        for &(v, bytes) in cases {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out, bytes, "encoding {v}");
            let mut c = Cursor::new(bytes);
            assert_eq!(c.read_varint("t").unwrap(), v);
            assert!(c.is_empty());
        }
    }

    #[test]
    fn varlong_extremes_round_trip() {
        for v in [
            0i64,
            -1,
            1,
            i64::MAX,
            i64::MIN,
            1_700_000_000_000,
            -1_700_000_000_000,
        ] {
            let mut out = Vec::new();
            put_varlong(&mut out, v);
            assert!(out.len() <= VARLONG_BYTES_MAX);
            let mut c = Cursor::new(&out);
            assert_eq!(c.read_varlong("t").unwrap(), v);
            assert!(c.is_empty());
        }
    }

    #[test]
    fn overlong_and_truncated_varints_fail() {
        let overlong = [0x80u8, 0x80, 0x80, 0x80, 0x80, 0x01];
        assert!(Cursor::new(&overlong).read_varint("t").is_err());
        let truncated = [0x80u8, 0x80];
        assert!(Cursor::new(&truncated).read_varint("t").is_err());
        assert!(Cursor::new(&[]).read_varint("t").is_err());
        let long11 = [0xffu8; 11];
        assert!(Cursor::new(&long11).read_varlong("t").is_err());
    }
}
