//! Slashing protection: a validator never signs two different declarations for one slot, nor
//! an FFG double vote or surround vote — even across crashes, restarts and moves between
//! machines.
//!
//! **Strategy**: EIP-3076's *minimal* strategy. For each key the database keeps three
//! high-water marks: the highest slot of a signed declaration, and the highest source and
//! target epochs of a signed attestation. A request is allowed only if it moves strictly
//! beyond them:
//!
//! * declaration at `slot`: `slot > max_slot`;
//! * attestation `(source, target)`: `source ≤ target`, `source ≥ max_source` and
//!   `target > max_target`.
//!
//! Any message passing these checks can be neither a double proposal, a double vote nor a
//! surround vote with anything signed before (everything before has a smaller slot, or a
//! smaller target and a source no larger). The price is that an identical message is never
//! signed twice; phalanx re-broadcasts the stored signature instead.
//!
//! **Durability**: [`SlashingProtection::check_and_record_declaration`] and
//! [`SlashingProtection::check_and_record_attestation`] commit the new marks to disk (redb,
//! fsync) *before* returning `Ok`; the caller signs only after that. A crash between the
//! commit and the signature loses a signature, never the protection.
//!
//! **Interchange** (EIP-3076, format version 5): phalanx declarations are the interchange's
//! `signed_blocks` (one per slot). Import folds each validator's history into its marks
//! (the maximum slot, source and target), so importing slashable or out-of-order data cannot
//! weaken protection; a file for another chain (different genesis validators root) or in
//! another format version is refused whole, before anything is written. Export writes one
//! block and one attestation per key at its marks, which is all a minimal importer needs.

use std::collections::BTreeMap;
use std::path::Path;

use alloy_primitives::B256;
use phalanx_crypto::PublicKeyBytes;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

const MARKS: TableDefinition<'_, &[u8; 48], &[u8; 27]> = TableDefinition::new("marks");
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");

/// The interchange format version phalanx reads and writes.
pub const INTERCHANGE_VERSION: &str = "5";

/// Why a signature was refused or the database failed.
#[derive(Debug, thiserror::Error)]
pub enum ProtectionError {
    /// Signing would risk a double proposal.
    #[error("refusing to sign a declaration at slot {slot}: already signed one at slot {max_slot}")]
    DeclarationNotNewer {
        /// Requested slot.
        slot: u64,
        /// Highest slot signed.
        max_slot: u64,
    },
    /// Signing would risk a double or surround vote.
    #[error(
        "refusing to sign attestation {source_epoch}→{target_epoch}: source must be ≥ {max_source} and target > {max_target}"
    )]
    AttestationNotNewer {
        /// Requested source epoch.
        source_epoch: u64,
        /// Requested target epoch.
        target_epoch: u64,
        /// Highest source signed.
        max_source: u64,
        /// Highest target signed.
        max_target: u64,
    },
    /// An attestation whose source is after its target.
    #[error("attestation source {source_epoch} is after its target {target_epoch}")]
    SourceAfterTarget {
        /// Source epoch.
        source_epoch: u64,
        /// Target epoch.
        target_epoch: u64,
    },
    /// The database is for another chain.
    #[error(
        "genesis validators root mismatch: this database is for {ours}, the request is for {theirs}"
    )]
    WrongChain {
        /// The database's.
        ours: B256,
        /// The other one.
        theirs: B256,
    },
    /// The interchange file is malformed or unsupported.
    #[error("interchange file: {0}")]
    Interchange(String),
    /// The database failed.
    #[error("slashing protection database: {0}")]
    Database(String),
}

fn db_err(e: impl std::fmt::Display) -> ProtectionError {
    ProtectionError::Database(e.to_string())
}

/// One key's high-water marks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Marks {
    /// Highest slot of a signed declaration.
    pub max_slot: Option<u64>,
    /// Highest source epoch of a signed attestation.
    pub max_source: Option<u64>,
    /// Highest target epoch of a signed attestation.
    pub max_target: Option<u64>,
}

impl Marks {
    fn encode(&self) -> [u8; 27] {
        let mut out = [0u8; 27];
        for (i, v) in [self.max_slot, self.max_source, self.max_target]
            .into_iter()
            .enumerate()
        {
            if let Some(v) = v {
                out[i] = 1;
                out[3 + i * 8..11 + i * 8].copy_from_slice(&v.to_be_bytes());
            }
        }
        out
    }

    fn decode(bytes: &[u8; 27]) -> Self {
        let field = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[3 + i * 8..11 + i * 8]);
            (bytes[i] == 1).then_some(u64::from_be_bytes(b))
        };
        Self {
            max_slot: field(0),
            max_source: field(1),
            max_target: field(2),
        }
    }

    fn fold_block(&mut self, slot: u64) {
        self.max_slot = Some(self.max_slot.map_or(slot, |m| m.max(slot)));
    }

    fn fold_attestation(&mut self, source: u64, target: u64) {
        self.max_source = Some(self.max_source.map_or(source, |m| m.max(source)));
        self.max_target = Some(self.max_target.map_or(target, |m| m.max(target)));
    }
}

/// The slashing-protection database of one chain.
pub struct SlashingProtection {
    db: redb::Database,
    genesis_validators_root: B256,
}

impl SlashingProtection {
    /// Opens (or creates) the database at `path` for the chain with `genesis_validators_root`.
    /// Fails if the file belongs to another chain.
    pub fn open(path: &Path, genesis_validators_root: B256) -> Result<Self, ProtectionError> {
        let db = redb::Database::create(path).map_err(|e| {
            ProtectionError::Database(format!("cannot open {}: {e}", path.display()))
        })?;
        Self::init(db, genesis_validators_root)
    }

    /// A database in memory (tests, simulators).
    pub fn in_memory(genesis_validators_root: B256) -> Result<Self, ProtectionError> {
        let db = redb::Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(db_err)?;
        Self::init(db, genesis_validators_root)
    }

    fn init(db: redb::Database, genesis_validators_root: B256) -> Result<Self, ProtectionError> {
        let txn = db.begin_write().map_err(db_err)?;
        {
            txn.open_table(MARKS).map_err(db_err)?;
            let mut meta = txn.open_table(META).map_err(db_err)?;
            let stored = meta
                .get("genesis_validators_root")
                .map_err(db_err)?
                .map(|v| B256::from_slice(v.value()));
            match stored {
                Some(ours) if ours != genesis_validators_root => {
                    return Err(ProtectionError::WrongChain {
                        ours,
                        theirs: genesis_validators_root,
                    });
                }
                Some(_) => {}
                None => {
                    meta.insert(
                        "genesis_validators_root",
                        genesis_validators_root.as_slice(),
                    )
                    .map_err(db_err)?;
                }
            }
        }
        txn.commit().map_err(db_err)?;
        Ok(Self {
            db,
            genesis_validators_root,
        })
    }

    /// The chain this database protects.
    pub fn genesis_validators_root(&self) -> B256 {
        self.genesis_validators_root
    }

    /// The marks of `pubkey` (all `None` if it never signed).
    pub fn marks(&self, pubkey: &PublicKeyBytes) -> Result<Marks, ProtectionError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(MARKS).map_err(db_err)?;
        Ok(table
            .get(&pubkey.0)
            .map_err(db_err)?
            .map(|v| Marks::decode(v.value()))
            .unwrap_or_default())
    }

    /// Runs `update` on `pubkey`'s marks in one durable write transaction; nothing is written
    /// if it fails.
    fn update<T>(
        &self,
        pubkey: &PublicKeyBytes,
        update: impl FnOnce(&mut Marks) -> Result<T, ProtectionError>,
    ) -> Result<T, ProtectionError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        let out = {
            let mut table = txn.open_table(MARKS).map_err(db_err)?;
            let mut marks = table
                .get(&pubkey.0)
                .map_err(db_err)?
                .map(|v| Marks::decode(v.value()))
                .unwrap_or_default();
            let out = update(&mut marks)?;
            table.insert(&pubkey.0, &marks.encode()).map_err(db_err)?;
            out
        };
        txn.commit().map_err(db_err)?;
        Ok(out)
    }

    /// Allows a declaration at `slot` by `pubkey` and records it durably, or refuses it.
    pub fn check_and_record_declaration(
        &self,
        pubkey: &PublicKeyBytes,
        slot: u64,
    ) -> Result<(), ProtectionError> {
        self.update(pubkey, |marks| {
            if let Some(max_slot) = marks.max_slot
                && slot <= max_slot
            {
                return Err(ProtectionError::DeclarationNotNewer { slot, max_slot });
            }
            marks.fold_block(slot);
            Ok(())
        })
    }

    /// Allows an attestation `source → target` by `pubkey` and records it durably, or refuses.
    pub fn check_and_record_attestation(
        &self,
        pubkey: &PublicKeyBytes,
        source_epoch: u64,
        target_epoch: u64,
    ) -> Result<(), ProtectionError> {
        if source_epoch > target_epoch {
            return Err(ProtectionError::SourceAfterTarget {
                source_epoch,
                target_epoch,
            });
        }
        self.update(pubkey, |marks| {
            let source_ok = marks.max_source.is_none_or(|m| source_epoch >= m);
            let target_ok = marks.max_target.is_none_or(|m| target_epoch > m);
            if !(source_ok && target_ok) {
                return Err(ProtectionError::AttestationNotNewer {
                    source_epoch,
                    target_epoch,
                    max_source: marks.max_source.unwrap_or_default(),
                    max_target: marks.max_target.unwrap_or_default(),
                });
            }
            marks.fold_attestation(source_epoch, target_epoch);
            Ok(())
        })
    }

    /// Imports an EIP-3076 interchange: all or nothing.
    pub fn import(&self, interchange: &Interchange) -> Result<(), ProtectionError> {
        if interchange.metadata.interchange_format_version != INTERCHANGE_VERSION {
            return Err(ProtectionError::Interchange(format!(
                "format version {:?} is not supported (expected {INTERCHANGE_VERSION:?})",
                interchange.metadata.interchange_format_version
            )));
        }
        if interchange.metadata.genesis_validators_root != self.genesis_validators_root {
            return Err(ProtectionError::WrongChain {
                ours: self.genesis_validators_root,
                theirs: interchange.metadata.genesis_validators_root,
            });
        }
        // Fold every record (duplicate keys included) before touching the database.
        let mut folded: BTreeMap<PublicKeyBytes, Marks> = BTreeMap::new();
        for record in &interchange.data {
            let marks = folded.entry(record.pubkey).or_default();
            for block in &record.signed_blocks {
                marks.fold_block(block.slot.0);
            }
            for att in &record.signed_attestations {
                marks.fold_attestation(att.source_epoch.0, att.target_epoch.0);
            }
        }
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut table = txn.open_table(MARKS).map_err(db_err)?;
            for (pubkey, new) in folded {
                let mut marks = table
                    .get(&pubkey.0)
                    .map_err(db_err)?
                    .map(|v| Marks::decode(v.value()))
                    .unwrap_or_default();
                if let Some(s) = new.max_slot {
                    marks.fold_block(s);
                }
                if let (Some(s), Some(t)) = (new.max_source, new.max_target) {
                    marks.fold_attestation(s, t);
                }
                table.insert(&pubkey.0, &marks.encode()).map_err(db_err)?;
            }
        }
        txn.commit().map_err(db_err)
    }

    /// Imports interchange JSON.
    pub fn import_json(&self, json: &str) -> Result<(), ProtectionError> {
        let interchange: Interchange =
            serde_json::from_str(json).map_err(|e| ProtectionError::Interchange(e.to_string()))?;
        self.import(&interchange)
    }

    /// Exports every key's marks as an EIP-3076 interchange (minimal form).
    pub fn export(&self) -> Result<Interchange, ProtectionError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(MARKS).map_err(db_err)?;
        let mut data = Vec::new();
        for entry in table.iter().map_err(db_err)? {
            let (key, value) = entry.map_err(db_err)?;
            let marks = Marks::decode(value.value());
            data.push(InterchangeRecord {
                pubkey: PublicKeyBytes::from(*key.value()),
                signed_blocks: marks
                    .max_slot
                    .map(|slot| SignedBlock {
                        slot: Quoted(slot),
                        signing_root: None,
                    })
                    .into_iter()
                    .collect(),
                signed_attestations: marks
                    .max_source
                    .zip(marks.max_target)
                    .map(|(s, t)| SignedAttestation {
                        source_epoch: Quoted(s),
                        target_epoch: Quoted(t),
                        signing_root: None,
                    })
                    .into_iter()
                    .collect(),
            });
        }
        Ok(Interchange {
            metadata: InterchangeMetadata {
                interchange_format_version: INTERCHANGE_VERSION.to_owned(),
                genesis_validators_root: self.genesis_validators_root,
            },
            data,
        })
    }
}

/// A `u64` written as a decimal string, as the interchange format does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quoted(pub u64);

impl Serialize for Quoted {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for Quoted {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map(Quoted)
            .map_err(|_| serde::de::Error::custom(format!("{s:?} is not a decimal u64")))
    }
}

/// EIP-3076 interchange file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interchange {
    /// Format version and chain.
    pub metadata: InterchangeMetadata,
    /// Per-key history.
    pub data: Vec<InterchangeRecord>,
}

/// Interchange metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterchangeMetadata {
    /// Must be "5".
    pub interchange_format_version: String,
    /// The chain.
    pub genesis_validators_root: B256,
}

/// One key's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterchangeRecord {
    /// BLS public key.
    pub pubkey: PublicKeyBytes,
    /// Signed blocks (phalanx: declarations).
    pub signed_blocks: Vec<SignedBlock>,
    /// Signed attestations.
    pub signed_attestations: Vec<SignedAttestation>,
}

/// A signed block (declaration) in the interchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedBlock {
    /// Slot.
    pub slot: Quoted,
    /// Signing root, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_root: Option<B256>,
}

/// A signed attestation in the interchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedAttestation {
    /// Source epoch.
    pub source_epoch: Quoted,
    /// Target epoch.
    pub target_epoch: Quoted,
    /// Signing root, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_root: Option<B256>,
}
