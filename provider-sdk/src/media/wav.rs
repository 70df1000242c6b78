//! WAV files for calls: 8 kHz mono audio in, 8 kHz mono 16-bit PCM out.
//!
//! [`read_wav`] accepts what can be sent as G.711 without resampling:
//! 16-bit PCM (format code 1, or `WAVE_FORMAT_EXTENSIBLE` with the PCM
//! sub-format) and 8-bit G.711 (format 6 A-law, format 7 µ-law), all at
//! 8000 Hz mono. Anything else gets a [`WavError`] that says what the file is
//! and what is expected, with the `sox` command that converts it.
//!
//! Recordings are written with `hound`. Reading is done here, by a short
//! chunk walk (RIFF header, `fmt `, `data`): `hound` rejects formats 6 and 7
//! without saying which format it saw, and it does not skip the pad byte
//! after an odd-sized chunk, so a file with such a chunk before its audio
//! (some editors write one) would be misread. Once the `data` chunk is found,
//! decoding 16-bit little-endian samples is one line.

use std::fmt;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::g711::{Codec, SAMPLE_RATE};

/// Files larger than this are refused before being read (about 4.6 hours
/// of 16-bit audio at 8 kHz).
pub const MAX_WAV_BYTES: u64 = 256 * 1024 * 1024;

/// What a caller should do with a file in another format.
pub const CONVERT_HINT: &str = "convert with `sox in.wav -r 8000 -c 1 -b 16 out.wav`";

const FORMAT_PCM: u16 = 1;
const FORMAT_ALAW: u16 = 6;
const FORMAT_ULAW: u16 = 7;
const FORMAT_EXTENSIBLE: u16 = 0xfffe;

/// The audio format a WAV file declares in its `fmt ` chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavFormat {
    /// The format code (for `WAVE_FORMAT_EXTENSIBLE`, the sub-format's code).
    pub format_code: u16,
    pub channels: u16,
    pub sample_rate: u32,
    pub bits_per_sample: u16,
}

impl WavFormat {
    fn encoding(&self) -> String {
        match self.format_code {
            FORMAT_PCM => "PCM".to_owned(),
            2 => "MS ADPCM".to_owned(),
            3 => "IEEE float".to_owned(),
            FORMAT_ALAW => "A-law".to_owned(),
            FORMAT_ULAW => "µ-law".to_owned(),
            0x11 => "IMA ADPCM".to_owned(),
            0x31 => "GSM 6.10".to_owned(),
            0x55 => "MP3".to_owned(),
            code => format!("format code {code:#06x}"),
        }
    }
}

impl fmt::Display for WavFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let channels = match self.channels {
            1 => "mono".to_owned(),
            2 => "stereo (2 channels)".to_owned(),
            n => format!("{n} channels"),
        };
        write!(
            f,
            "{} Hz, {channels}, {}-bit {}",
            self.sample_rate,
            self.bits_per_sample,
            self.encoding()
        )
    }
}

/// Why a WAV file could not be read or written.
#[derive(Debug, Error)]
pub enum WavError {
    /// The file could not be opened, read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_WAV_BYTES`].
    #[error("WAV file is {bytes} bytes, more than the {limit} bytes accepted")]
    TooLarge { bytes: u64, limit: u64 },
    /// The file does not start with a RIFF/WAVE header.
    #[error("not a WAV file: no RIFF/WAVE header")]
    NotWav,
    /// A chunk claims more bytes than the file has.
    #[error("truncated WAV file: the {chunk:?} chunk declares {declared} bytes but only {present} are present")]
    Truncated {
        chunk: String,
        declared: u64,
        present: u64,
    },
    /// The file is a WAV file but its structure is broken.
    #[error("malformed WAV file: {0}")]
    Malformed(String),
    /// The recording could not be encoded.
    #[error("cannot write WAV file: {0}")]
    Write(String),
    /// The file is valid but not 8 kHz mono 16-bit PCM or 8-bit G.711.
    #[error("unsupported WAV format: {found}; expected 8000 Hz mono 16-bit PCM (or 8-bit G.711 A-law/µ-law): {CONVERT_HINT}")]
    Unsupported { found: WavFormat },
}

/// Reads a WAV file into 8 kHz mono 16-bit samples.
pub fn read_wav(path: &Path) -> Result<Vec<i16>, WavError> {
    let io = |source| WavError::Io {
        path: path.to_owned(),
        source,
    };
    let bytes = std::fs::metadata(path).map_err(io)?.len();
    if bytes > MAX_WAV_BYTES {
        return Err(WavError::TooLarge {
            bytes,
            limit: MAX_WAV_BYTES,
        });
    }
    let data = std::fs::read(path).map_err(io)?;
    read_wav_bytes(&data)
}

/// Reads WAV file contents into 8 kHz mono 16-bit samples.
pub fn read_wav_bytes(file: &[u8]) -> Result<Vec<i16>, WavError> {
    if file.len() as u64 > MAX_WAV_BYTES {
        return Err(WavError::TooLarge {
            bytes: file.len() as u64,
            limit: MAX_WAV_BYTES,
        });
    }
    let layout = scan(file)?;
    let format = layout.format;
    let codec = match (format.format_code, format.bits_per_sample) {
        (FORMAT_PCM, 16) => None,
        (FORMAT_ALAW, 8) => Some(Codec::Pcma),
        (FORMAT_ULAW, 8) => Some(Codec::Pcmu),
        _ => return Err(WavError::Unsupported { found: format }),
    };
    if format.channels != 1 || format.sample_rate != SAMPLE_RATE {
        return Err(WavError::Unsupported { found: format });
    }
    let data = &file[layout.data.0..layout.data.1];
    match codec {
        Some(codec) => Ok(codec.decode(data)),
        None => {
            if data.len() % 2 != 0 {
                return Err(WavError::Malformed(format!(
                    "data chunk of {} bytes is not a whole number of 16-bit samples",
                    data.len()
                )));
            }
            Ok(data
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect())
        }
    }
}

/// Writes samples as an 8 kHz mono 16-bit PCM WAV file.
pub fn write_wav(path: &Path, samples: &[i16]) -> Result<(), WavError> {
    let to_error = |e: hound::Error| match e {
        hound::Error::IoError(source) => WavError::Io {
            path: path.to_owned(),
            source,
        },
        other => WavError::Write(other.to_string()),
    };
    let writer = hound::WavWriter::create(path, pcm_spec()).map_err(to_error)?;
    write_samples(writer, samples).map_err(to_error)
}

/// The bytes of an 8 kHz mono 16-bit PCM WAV file holding `samples`.
pub fn encode_wav(samples: &[i16]) -> Result<Vec<u8>, WavError> {
    let mut out = Cursor::new(Vec::with_capacity(44 + 2 * samples.len()));
    let writer =
        hound::WavWriter::new(&mut out, pcm_spec()).map_err(|e| WavError::Write(e.to_string()))?;
    write_samples(writer, samples).map_err(|e| WavError::Write(e.to_string()))?;
    Ok(out.into_inner())
}

fn pcm_spec() -> hound::WavSpec {
    hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    }
}

fn write_samples<W: std::io::Write + std::io::Seek>(
    mut writer: hound::WavWriter<W>,
    samples: &[i16],
) -> Result<(), hound::Error> {
    // The RIFF sizes are 32-bit: at most 2^31 - 1 samples of 2 bytes.
    let count = u32::try_from(samples.len())
        .ok()
        .filter(|n| *n <= u32::MAX / 2 - 64)
        .ok_or(hound::Error::FormatError(
            "too many samples for one WAV file",
        ))?;
    let mut w = writer.get_i16_writer(count);
    for s in samples {
        w.write_sample(*s);
    }
    w.flush()?;
    writer.finalize()
}

/// Where the parts of a WAV file are.
struct Layout {
    format: WavFormat,
    /// Byte range of the `data` chunk's contents.
    data: (usize, usize),
}

fn scan(file: &[u8]) -> Result<Layout, WavError> {
    if file.len() < 12 || &file[0..4] != b"RIFF" || &file[8..12] != b"WAVE" {
        return Err(WavError::NotWav);
    }
    let mut format = None;
    let mut pos = 12usize;
    loop {
        let Some(header) = file.get(pos..pos + 8) else {
            return Err(WavError::Malformed(
                match format {
                    None => "no fmt chunk",
                    Some(_) => "no data chunk",
                }
                .to_owned(),
            ));
        };
        let id = &header[0..4];
        let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let start = pos + 8;
        let present = (file.len() - start) as u64;
        if u64::from(size) > present {
            return Err(WavError::Truncated {
                chunk: String::from_utf8_lossy(id).into_owned(),
                declared: u64::from(size),
                present,
            });
        }
        let end = start + size as usize;
        let body = &file[start..end];
        match id {
            b"fmt " => format = Some(parse_fmt(body)?),
            b"data" => {
                let format = format.ok_or_else(|| {
                    WavError::Malformed("data chunk comes before the fmt chunk".to_owned())
                })?;
                return Ok(Layout {
                    format,
                    data: (start, end),
                });
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        pos = end + (size as usize & 1);
    }
}

fn parse_fmt(body: &[u8]) -> Result<WavFormat, WavError> {
    if body.len() < 16 {
        return Err(WavError::Malformed(format!(
            "fmt chunk is {} bytes, at least 16 expected",
            body.len()
        )));
    }
    let u16_at = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
    let mut format_code = u16_at(0);
    let channels = u16_at(2);
    let sample_rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
    let block_align = u16_at(12);
    let bits_per_sample = u16_at(14);
    if format_code == FORMAT_EXTENSIBLE {
        // WAVEFORMATEXTENSIBLE: cbSize, valid bits, channel mask, then the
        // sub-format GUID whose first two bytes are the format code.
        if body.len() < 40 {
            return Err(WavError::Malformed(format!(
                "extensible fmt chunk is {} bytes, 40 expected",
                body.len()
            )));
        }
        format_code = u16_at(24);
    }
    if channels == 0 {
        return Err(WavError::Malformed(
            "fmt chunk declares 0 channels".to_owned(),
        ));
    }
    let expected_align = u32::from(channels) * u32::from(bits_per_sample).div_ceil(8);
    if matches!(format_code, FORMAT_PCM | FORMAT_ALAW | FORMAT_ULAW)
        && u32::from(block_align) != expected_align
    {
        return Err(WavError::Malformed(format!(
            "block alignment {block_align} does not match {channels} channel(s) of {bits_per_sample} bits"
        )));
    }
    Ok(WavFormat {
        format_code,
        channels,
        sample_rate,
        bits_per_sample,
    })
}
