//! BLAKE2b-512 (what `b2sum` prints), computed on bytes as they are written.

use std::io::{self, Write};

/// 128 lowercase hex characters.
pub fn hex(state: &blake2b_simd::State) -> String {
    state.finalize().to_hex().to_string()
}

pub fn new_state() -> blake2b_simd::State {
    blake2b_simd::Params::new().hash_length(64).to_state()
}

/// Hash of a whole reader.
pub fn of_reader(mut r: impl io::Read) -> io::Result<String> {
    let mut state = new_state();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        state.update(&buf[..n]);
    }
    Ok(hex(&state))
}

/// True for exactly 128 hex digits.
pub fn is_valid_hex(s: &str) -> bool {
    s.len() == 128 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A writer that hashes and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    state: blake2b_simd::State,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            state: new_state(),
            written: 0,
        }
    }
    pub fn written(&self) -> u64 {
        self.written
    }
    /// The inner writer, the hex digest and the byte count.
    pub fn finish(self) -> (W, String, u64) {
        let hex = hex(&self.state);
        (self.inner, hex, self.written)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.state.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_b2sum_of_abc() {
        // b2sum of the 3 bytes "abc" (RFC 7693 appendix A).
        let expected = "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1\
                        7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923";
        assert_eq!(of_reader(&b"abc"[..]).unwrap(), expected);
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"a").unwrap();
        w.write_all(b"bc").unwrap();
        let (inner, hex, n) = w.finish();
        assert_eq!(
            (inner.as_slice(), hex.as_str(), n),
            (&b"abc"[..], expected, 3)
        );
    }
}
