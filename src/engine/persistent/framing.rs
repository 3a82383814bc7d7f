//! How records are cut on a persistent worker's stdin and stdout: ended by a separator byte
//! (the line protocol of shell and script workers), or each preceded by its length (binary
//! records, as the Python package's workers speak: a pickle may hold any byte).

use std::ops::Range;

/// How a worker's records are framed, both ways.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Each record ends with this byte (`\n` or NUL); a record cannot hold it.
    Separated(u8),
    /// Each record is its length (4 bytes, little-endian) and then its bytes: any bytes at all.
    LengthPrefixed,
}

/// The longest record a length prefix can announce. A worker that writes plain text to its
/// stdout instead of frames announces lengths past this (four ASCII bytes read as a length
/// are over 500 MB), and is taken as broken rather than waited on.
pub const MAX_FRAME: usize = 256 << 20;

/// The prefix's size.
const PREFIX: usize = 4;

impl Framing {
    /// Why `record` cannot be sent as one record, if it cannot.
    pub(crate) fn refuses(self, record: &[u8]) -> Option<String> {
        match self {
            Framing::Separated(separator) if record.contains(&separator) => {
                let name = if separator == b'\n' { "a newline" } else { "NUL" };
                Some(format!(
                    "its input holds the record separator ({name}), so it cannot be one record on a worker's stdin"
                ))
            }
            Framing::LengthPrefixed if record.len() > MAX_FRAME => Some(format!(
                "its input is {} bytes, over the {} MiB a framed record may hold",
                record.len(),
                MAX_FRAME >> 20
            )),
            _ => None,
        }
    }

    /// Appends `record`, framed, to `buf`.
    pub(crate) fn write(self, buf: &mut Vec<u8>, record: &[u8]) {
        match self {
            Framing::Separated(separator) => {
                buf.extend_from_slice(record);
                buf.push(separator);
            }
            Framing::LengthPrefixed => {
                // `refuses` keeps longer records out.
                buf.extend_from_slice(&(record.len() as u32).to_le_bytes());
                buf.extend_from_slice(record);
            }
        }
    }

    /// Cuts the complete records off the front of `bytes`: where each one's bytes are (framing
    /// removed) goes into `records`; returns how many bytes they took. An error when a length
    /// prefix is past [`MAX_FRAME`] (the records before it are in `records`).
    pub(crate) fn split(self, bytes: &[u8], records: &mut Vec<Range<usize>>) -> Result<usize, Oversized> {
        let mut start = 0;
        match self {
            Framing::Separated(separator) => {
                // Counted first, so the list is allocated once (not grown by doubling).
                records.reserve(memchr::memchr_iter(separator, bytes).count());
                for end in memchr::memchr_iter(separator, bytes) {
                    records.push(start..end);
                    start = end + 1;
                }
            }
            Framing::LengthPrefixed => {
                while let Some(prefix) = bytes.get(start..start + PREFIX) {
                    let mut length = [0u8; PREFIX];
                    length.copy_from_slice(prefix);
                    let length = u32::from_le_bytes(length) as usize;
                    if length > MAX_FRAME {
                        return Err(Oversized(length));
                    }
                    if bytes.len() < start + PREFIX + length {
                        break;
                    }
                    records.push(start + PREFIX..start + PREFIX + length);
                    start += PREFIX + length;
                }
            }
        }
        Ok(start)
    }

    /// Where a record's bytes (`record`, as [`split`](Self::split) found them) and what
    /// follows are the task's output: a line with its separator, a frame's bytes as they are.
    pub(crate) fn output_of(self, record: Range<usize>) -> Range<usize> {
        match self {
            Framing::Separated(_) => record.start..record.end + 1,
            Framing::LengthPrefixed => record,
        }
    }

    /// What the unfinished end of a stream still counts as: a last line without its
    /// separator is a record; half a frame is nothing.
    pub(crate) fn last(self, rest: Vec<u8>) -> Option<Vec<u8>> {
        match self {
            Framing::Separated(_) if !rest.is_empty() => Some(rest),
            _ => None,
        }
    }

    /// What a reply becomes as the task's output: a line gets its separator back; a frame's
    /// bytes are the output as they are.
    pub(crate) fn output(self, mut record: Vec<u8>) -> Vec<u8> {
        if let Framing::Separated(separator) = self {
            record.push(separator);
        }
        record
    }
}

/// A length prefix announcing more than [`MAX_FRAME`] bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Oversized(pub(crate) usize);

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(records: &[&[u8]]) -> Vec<u8> {
        let mut buf = Vec::new();
        for record in records {
            Framing::LengthPrefixed.write(&mut buf, record);
        }
        buf
    }

    /// Splits length-prefixed `bytes`, the records' bytes appended to `out`.
    fn split(bytes: &[u8], out: &mut Vec<Vec<u8>>) -> Result<usize, Oversized> {
        let mut ranges = Vec::new();
        let used = Framing::LengthPrefixed.split(bytes, &mut ranges);
        out.extend(ranges.into_iter().map(|range| bytes[range].to_vec()));
        used
    }

    #[test]
    fn frames_carry_any_bytes_and_split_back_at_any_cut() {
        let records: [&[u8]; 4] = [b"", b"a\nb\0c", &[0xff; 300], b"\x04\0\0\0"];
        let bytes = framed(&records);
        // However the stream is cut into reads, the same records come out, each once.
        for cut in 0..=bytes.len() {
            let mut out = Vec::new();
            let mut pending = bytes[..cut].to_vec();
            let used = split(&pending, &mut out).unwrap();
            pending.drain(..used);
            pending.extend_from_slice(&bytes[cut..]);
            let used = split(&pending, &mut out).unwrap();
            assert_eq!(used, pending.len(), "cut at {cut}");
            assert_eq!(out, records.iter().map(|r| r.to_vec()).collect::<Vec<_>>(), "cut at {cut}");
        }
    }

    #[test]
    fn text_where_frames_belong_is_refused_not_awaited() {
        let mut out = Vec::new();
        let mut bytes = framed(&[b"ok"]);
        bytes.extend_from_slice(b"hello world\n");
        assert_eq!(split(&bytes, &mut out), Err(Oversized(0x6c6c_6568)));
        assert_eq!(out, vec![b"ok".to_vec()]);
    }

    #[test]
    fn half_a_frame_at_the_end_is_no_record_but_a_last_line_is() {
        assert_eq!(Framing::LengthPrefixed.last(b"\x05\0\0\0ab".to_vec()), None);
        assert_eq!(Framing::Separated(b'\n').last(b"ab".to_vec()), Some(b"ab".to_vec()));
        assert_eq!(Framing::Separated(b'\n').last(Vec::new()), None);
    }

    #[test]
    fn a_separator_inside_a_line_record_is_refused_but_not_inside_a_frame() {
        assert!(Framing::Separated(b'\n').refuses(b"a\nb").is_some());
        assert!(Framing::Separated(0).refuses(b"a\0b").is_some());
        assert!(Framing::LengthPrefixed.refuses(b"a\nb\0").is_none());
    }
}
