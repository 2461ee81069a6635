//! Reading and writing whole PDUs on a byte stream: framing only, the codec
//! does the rest.

use std::io;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::pdu::{Bhs, DecodeError, Digests, EncodedPdu, Pdu, BHS_LEN};

/// Why reading a PDU failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    /// The PDU was framed but does not decode. The raw BHS is kept so the
    /// target can quote it in a Reject.
    #[error("bad PDU: {error}")]
    Bad { error: DecodeError, bhs: [u8; BHS_LEN] },
    #[error("data segment of {0} bytes exceeds the negotiated maximum")]
    TooLong(usize),
}

/// Reads one PDU. `max_data` bounds the data segment we accept so a peer
/// cannot make us allocate arbitrary memory.
pub async fn read_pdu<R: AsyncRead + Unpin>(r: &mut R, d: Digests, max_data: usize) -> Result<Pdu, ReadError> {
    let (header, bhs, data_len) = read_header(r, d, max_data).await?;
    let mut data = BytesMut::with_capacity(data_len);
    read_onto(r, &mut data, data_len).await?;
    Pdu::decode(&header, data.freeze(), d).map_err(|error| ReadError::Bad { error, bhs })
}

/// [`read_pdu`] through a receive buffer. Headers (and small data) come
/// from the buffer, so at queue depth one system call takes several PDUs;
/// the part of a data segment not yet buffered is read straight into
/// place, so large Data-Out is not copied twice.
pub async fn read_pdu_buffered<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    d: Digests,
    max_data: usize,
) -> Result<Pdu, ReadError> {
    let (header, bhs, data_len) = read_header(r, d, max_data).await?;
    let mut data = BytesMut::with_capacity(data_len);
    let n = r.buffer().len().min(data_len);
    data.extend_from_slice(&r.buffer()[..n]);
    r.consume(n);
    read_onto(r.get_mut(), &mut data, data_len - n).await?;
    Pdu::decode(&header, data.freeze(), d).map_err(|error| ReadError::Bad { error, bhs })
}

/// Reads exactly `len` more bytes onto the end of `data`, straight into
/// its spare capacity: a data segment is not zeroed before it is read.
async fn read_onto<R: AsyncRead + Unpin>(r: &mut R, data: &mut BytesMut, len: usize) -> io::Result<()> {
    let end = data.len() + len;
    while data.len() < end {
        let want = end - data.len();
        if r.read_buf(&mut (&mut *data).limit(want)).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}

/// Reads the BHS and the rest of the header; returns the header, the raw
/// BHS (for a Reject) and the data segment's length on the wire.
async fn read_header<R: AsyncRead + Unpin>(
    r: &mut R,
    d: Digests,
    max_data: usize,
) -> Result<(Vec<u8>, [u8; BHS_LEN], usize), ReadError> {
    let mut bhs = [0u8; BHS_LEN];
    r.read_exact(&mut bhs).await?;
    let frame = Bhs::parse(&bhs).map_err(|error| ReadError::Bad { error, bhs })?;
    if frame.data_len > max_data {
        return Err(ReadError::TooLong(frame.data_len));
    }
    let mut header = Vec::with_capacity(BHS_LEN + frame.header_rest_len(d));
    header.extend_from_slice(&bhs);
    header.resize(BHS_LEN + frame.header_rest_len(d), 0);
    r.read_exact(&mut header[BHS_LEN..]).await?;
    Ok((header, bhs, frame.data_wire_len(d)))
}

/// Writes encoded PDUs with as few system calls as the batch allows.
pub async fn write_pdus<W: AsyncWrite + Unpin>(w: &mut W, pdus: &[EncodedPdu]) -> io::Result<()> {
    let mut parts: Vec<&[u8]> = Vec::with_capacity(pdus.len() * 3);
    for p in pdus {
        for part in [&p.head[..], &p.data[..], &p.tail[..]] {
            if !part.is_empty() {
                parts.push(part);
            }
        }
    }
    let mut idx = 0;
    let mut off = 0;
    while idx < parts.len() {
        let slices: Vec<io::IoSlice<'_>> = std::iter::once(io::IoSlice::new(&parts[idx][off..]))
            .chain(parts[idx + 1..].iter().take(63).map(|p| io::IoSlice::new(p)))
            .collect();
        let mut n = w.write_vectored(&slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while idx < parts.len() && n > 0 {
            let left = parts[idx].len() - off;
            if n >= left {
                n -= left;
                idx += 1;
                off = 0;
            } else {
                off += n;
                n = 0;
            }
        }
    }
    w.flush().await
}
