//! What the devnet keeps on disk to resume after a stop or a crash (`data-dir/chain/`):
//!
//! - `genesis.json`: the genesis (with its time), written once, atomically (temporary file,
//!   sync, rename); a restart rebuilds every key from the seed and refuses to go on if the
//!   rebuilt genesis differs (another seed or other sizes: pass `--fresh`).
//! - `blocks.ssz`: every block validator 0 imported, in import order, each as a 4-byte
//!   big-endian length and the block's SSZ, synced before the next slot's work. A crash can
//!   tear the last record; reading stops there, says so, and truncates the tail.
//! - `protection/validator-N.redb`: each validator's slashing-protection database, so a
//!   restarted validator never signs what it signed before the crash.
//!
//! The servers' state replicas and roots logs are under `data-dir/servers/` (see the
//! cluster crate).

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use phalanx_types::consensus::SignedBlock;
use ssz::{Decode as _, Encode as _};

use crate::DevnetError;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DevnetError + '_ {
    move |source| DevnetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DevnetError> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The append-only log of imported blocks.
#[derive(Debug)]
pub struct BlockLog {
    path: PathBuf,
    file: std::fs::File,
}

impl BlockLog {
    /// Opens (or creates) the log at `path` and reads every whole record in it; a torn or
    /// undecodable tail is cut off.
    pub fn open(path: &Path) -> Result<(Self, Vec<SignedBlock>), DevnetError> {
        let mut bytes = Vec::new();
        if path.exists() {
            std::fs::File::open(path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(io(path))?;
        }
        let mut blocks = Vec::new();
        let mut at = 0usize;
        while at < bytes.len() {
            let Some(len) = bytes
                .get(at..at + 4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(|b| u32::from_be_bytes(b) as usize)
            else {
                break;
            };
            let Some(body) = bytes.get(at + 4..at + 4 + len) else {
                break;
            };
            match SignedBlock::from_ssz_bytes(body) {
                Ok(block) => blocks.push(block),
                Err(e) => {
                    tracing::warn!(offset = at, error = ?e, "devnet: undecodable block record; the log is cut here");
                    break;
                }
            }
            at += 4 + len;
        }
        if at < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                kept = at,
                dropped = bytes.len() - at,
                "devnet: the block log ends in a torn record (a crash while writing); cutting it off"
            );
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io(path))?;
        file.set_len(at as u64).map_err(io(path))?;
        Ok((
            Self {
                path: path.to_path_buf(),
                file,
            },
            blocks,
        ))
    }

    /// Appends `block` and syncs.
    pub fn append(&mut self, block: &SignedBlock) -> Result<(), DevnetError> {
        let body = block.as_ssz_bytes();
        let len = u32::try_from(body.len()).map_err(|_| DevnetError::Io {
            path: self.path.clone(),
            source: std::io::Error::other("block larger than 4 GiB"),
        })?;
        let mut record = Vec::with_capacity(4 + body.len());
        record.extend_from_slice(&len.to_be_bytes());
        record.extend_from_slice(&body);
        self.file.write_all(&record).map_err(io(&self.path))?;
        self.file.sync_data().map_err(io(&self.path))
    }
}
