//! Package files, read and written only through a `cap-std` handle on the package root.
//!
//! Every path that comes from a package (a manifest's `file`, an archive entry) is opened
//! relative to that handle, so `../x`, `/etc/passwd` or a symlink pointing outside cannot
//! reach anything beyond the package: the handle refuses them, whatever our own checks missed.

use std::collections::HashSet;
use std::io::{ErrorKind, Read, Write};
use std::path::Path;

use cap_std::ambient_authority;
use cap_std::fs::Dir;

use crate::PackageError;

/// The manifest's name inside a package.
pub const MANIFEST: &str = "manifest.json";
/// The signature's name inside a package.
pub const SIGNATURE: &str = "signature.json";
/// The folder components live in.
pub const COMPONENTS: &str = "components";

/// Caps on what one package may hold, so a hostile package cannot exhaust memory or disk.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;
pub const MAX_SIGNATURE_BYTES: u64 = 16 << 10;
pub const MAX_COMPONENT_BYTES: u64 = 64 << 20;

/// An open package directory.
pub(crate) struct PackageRoot {
    dir: Dir,
}

impl PackageRoot {
    /// Opens `path` (the only ambient path this crate opens a package by).
    pub(crate) fn open(path: &Path) -> Result<PackageRoot, PackageError> {
        let dir = Dir::open_ambient_dir(path, ambient_authority()).map_err(|e| PackageError::io(path.display(), e))?;
        Ok(PackageRoot { dir })
    }

    pub(crate) fn dir(&self) -> &Dir {
        &self.dir
    }

    /// Reads `rel`, or `None` when it does not exist.
    pub(crate) fn read_optional(&self, rel: &str, cap: u64) -> Result<Option<Vec<u8>>, PackageError> {
        let file = match self.dir.open(rel) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(open_error(rel, e)),
        };
        let meta = file.metadata().map_err(|e| PackageError::io(rel, e))?;
        if !meta.is_file() {
            return Err(PackageError::UnlistedFile { path: rel.into(), reason: "is not a regular file".into() });
        }
        if meta.len() > cap {
            return Err(PackageError::TooLarge { path: rel.into(), limit: cap });
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        // `take` too: the length could change between `metadata` and the read.
        file.take(cap + 1).read_to_end(&mut bytes).map_err(|e| PackageError::io(rel, e))?;
        if bytes.len() as u64 > cap {
            return Err(PackageError::TooLarge { path: rel.into(), limit: cap });
        }
        Ok(Some(bytes))
    }

    /// Reads `rel`, which the manifest lists, so its absence is a refusal.
    pub(crate) fn read(&self, rel: &str, cap: u64) -> Result<Vec<u8>, PackageError> {
        self.read_optional(rel, cap)?.ok_or_else(|| PackageError::MissingFile(rel.into()))
    }

    /// Writes `rel` (creating `components/` when needed), replacing what was there.
    pub(crate) fn write(&self, rel: &str, bytes: &[u8]) -> Result<(), PackageError> {
        if let Some((parent, _)) = rel.rsplit_once('/') {
            self.dir.create_dir_all(parent).map_err(|e| open_error(parent, e))?;
        }
        let mut file = self.dir.create(rel).map_err(|e| open_error(rel, e))?;
        file.write_all(bytes).map_err(|e| PackageError::io(rel, e))?;
        file.sync_all().map_err(|e| PackageError::io(rel, e))
    }

    /// Refuses anything in the package but `manifest.json`, `signature.json` and the listed
    /// component files: an unlisted file is unsigned content, and a symlink or device is not
    /// content at all.
    pub(crate) fn check_listing(&self, listed: &[String]) -> Result<(), PackageError> {
        let listed: HashSet<&str> = listed.iter().map(String::as_str).collect();
        for (name, kind) in entries(&self.dir, "")? {
            match (name.as_str(), kind) {
                (MANIFEST | SIGNATURE, Kind::File) | (COMPONENTS, Kind::Dir) => {}
                (_, kind) => return Err(unlisted(&name, kind)),
            }
        }
        let components = match self.dir.open_dir(COMPONENTS) {
            Ok(d) => d,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(open_error(COMPONENTS, e)),
        };
        for (name, kind) in entries(&components, COMPONENTS)? {
            if kind != Kind::File || !listed.contains(name.as_str()) {
                return Err(unlisted(&name, kind));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

/// `(path relative to the package root, kind)` of each entry of `dir`, symlinks not followed.
fn entries(dir: &Dir, prefix: &str) -> Result<Vec<(String, Kind)>, PackageError> {
    let shown = if prefix.is_empty() { "." } else { prefix };
    let mut out = Vec::new();
    for entry in dir.entries().map_err(|e| PackageError::io(shown, e))? {
        let entry = entry.map_err(|e| PackageError::io(shown, e))?;
        let raw = entry.file_name();
        let Some(name) = raw.to_str() else {
            return Err(PackageError::UnlistedFile {
                path: format!("{prefix}/{}", raw.to_string_lossy()),
                reason: "has a name that is not UTF-8".into(),
            });
        };
        let ty = entry.file_type().map_err(|e| PackageError::io(name, e))?;
        let kind = if ty.is_symlink() {
            Kind::Symlink
        } else if ty.is_file() {
            Kind::File
        } else if ty.is_dir() {
            Kind::Dir
        } else {
            Kind::Other
        };
        let path = if prefix.is_empty() { name.to_string() } else { format!("{prefix}/{name}") };
        out.push((path, kind));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn unlisted(path: &str, kind: Kind) -> PackageError {
    let reason = match kind {
        Kind::File | Kind::Dir => "is not listed in the manifest",
        Kind::Symlink => "is a symlink: a package holds regular files only",
        Kind::Other => "is not a regular file",
    };
    PackageError::UnlistedFile { path: path.into(), reason: reason.into() }
}

/// The handle's refusal to leave the root is `PermissionDenied`; anything else is i/o.
fn open_error(rel: &str, e: std::io::Error) -> PackageError {
    if e.kind() == ErrorKind::PermissionDenied || rel.starts_with('/') || rel.split('/').any(|c| c == "..") {
        PackageError::PathEscape { path: rel.into(), reason: e.to_string() }
    } else {
        PackageError::io(rel, e)
    }
}
