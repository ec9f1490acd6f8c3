//! A minimal protobuf wire-format reader, just enough to decode SentencePiece's
//! `ModelProto` (no code generation, no dependency). Unknown fields are skipped.

/// One decoded field value.
#[derive(Debug, Clone, Copy)]
pub(super) enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1 (skipped: SentencePiece has no such field).
    Fixed64,
    /// Wire type 2: bytes, strings and embedded messages.
    Bytes(&'a [u8]),
    /// Wire type 5 (floats).
    Fixed32(u32),
}

/// Iterates over the `(field number, value)` pairs of one message.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(format!("varint runs past the end at byte {}", self.pos));
            };
            self.pos += 1;
            if shift < 64 {
                value |= ((b & 0x7f) as u64) << shift;
            }
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(format!("varint longer than 10 bytes at byte {}", self.pos))
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(|| {
            format!("field of {n} bytes at byte {} runs past the end ({} bytes)", self.pos, self.buf.len())
        })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// The next field, or `None` at the end of the message.
    pub(super) fn next_field(&mut self) -> Result<Option<(u32, Value<'a>)>, String> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = (key >> 3) as u32;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.bytes(8)?;
                Value::Fixed64
            }
            2 => {
                let n = self.varint()?;
                let n = usize::try_from(n).map_err(|_| format!("length {n} too large"))?;
                Value::Bytes(self.bytes(n)?)
            }
            5 => Value::Fixed32(u32::from_le_bytes(self.bytes(4)?.try_into().unwrap())),
            w => return Err(format!("unsupported wire type {w} for field {field}")),
        };
        Ok(Some((field, value)))
    }
}

impl<'a> Value<'a> {
    pub(super) fn as_bytes(self, what: &str) -> Result<&'a [u8], String> {
        match self {
            Value::Bytes(b) => Ok(b),
            _ => Err(format!("{what}: expected a length-delimited field")),
        }
    }

    pub(super) fn as_str(self, what: &str) -> Result<&'a str, String> {
        std::str::from_utf8(self.as_bytes(what)?).map_err(|_| format!("{what}: not UTF-8"))
    }

    pub(super) fn as_varint(self, what: &str) -> Result<u64, String> {
        match self {
            Value::Varint(v) => Ok(v),
            _ => Err(format!("{what}: expected a varint field")),
        }
    }

    /// An `int32` field (negative values are sign-extended to 64 bits on the wire).
    pub(super) fn as_i32(self, what: &str) -> Result<i32, String> {
        Ok(self.as_varint(what)? as i64 as i32)
    }

    pub(super) fn as_bool(self, what: &str) -> Result<bool, String> {
        Ok(self.as_varint(what)? != 0)
    }

    pub(super) fn as_f32(self, what: &str) -> Result<f32, String> {
        match self {
            Value::Fixed32(v) => Ok(f32::from_bits(v)),
            _ => Err(format!("{what}: expected a 32-bit float field")),
        }
    }
}
