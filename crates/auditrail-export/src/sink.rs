//! Where export bytes go: a file, counted and hashed (SHA-256 of the bytes as stored,
//! after any gzip), optionally gzip-compressed.

use std::fs::File;
use std::io::{self, BufWriter, Write};

use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

/// Counts and hashes everything written through it.
pub struct Measured<W: Write> {
    inner: W,
    bytes: u64,
    hash: Sha256,
}

impl<W: Write> Measured<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            bytes: 0,
            hash: Sha256::new(),
        }
    }

    /// The inner writer, the byte count and the hex SHA-256.
    pub fn finish(self) -> (W, u64, String) {
        (self.inner, self.bytes, hex::encode(self.hash.finalize()))
    }
}

impl<W: Write> Write for Measured<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The file an encoder writes to: measured, with gzip in front when asked.
pub enum Sink {
    Plain(Measured<BufWriter<File>>),
    Gzip(Box<GzEncoder<Measured<BufWriter<File>>>>),
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub bytes: u64,
    pub sha256: String,
}

impl Sink {
    pub fn new(file: File, gzip: bool) -> Self {
        let m = Measured::new(BufWriter::with_capacity(1 << 20, file));
        if gzip {
            Sink::Gzip(Box::new(GzEncoder::new(m, Compression::fast())))
        } else {
            Sink::Plain(m)
        }
    }

    /// Finishes compression, flushes, and fsyncs the file: once this returns, the bytes
    /// are on disk.
    pub fn finish(self) -> io::Result<Written> {
        let m = match self {
            Sink::Plain(m) => m,
            Sink::Gzip(g) => g.finish()?,
        };
        let (buf, bytes, sha256) = m.finish();
        let file = buf.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(Written { bytes, sha256 })
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(m) => m.write(buf),
            Sink::Gzip(g) => g.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Sink::Plain(m) => m.write_all(buf),
            Sink::Gzip(g) => g.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(m) => m.flush(),
            Sink::Gzip(g) => g.flush(),
        }
    }
}
