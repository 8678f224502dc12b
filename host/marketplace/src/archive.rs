//! The single-file form for transport: a tar of the package directory.
//!
//! The archive's root is the package root (`manifest.json`, `signature.json`,
//! `components/NAME.wasm`; a leading `./` is accepted). Unpacking refuses, before writing the
//! entry: absolute paths, `..`, backslashes, symlinks, hard links and anything but regular
//! files and directories, a name twice, more than [`MAX_ARCHIVE_ENTRIES`] entries, a file over
//! [`MAX_COMPONENT_BYTES`], and more than [`MAX_ARCHIVE_BYTES`] in all. Every write goes
//! through a `cap-std` handle on a fresh temporary directory, so an entry our checks missed
//! still cannot land outside it. The unpacked directory is then verified like any other.

use std::io::{ErrorKind, Read, Write};
use std::path::Path;

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};
use tar::EntryType;

use crate::files::{PackageRoot, COMPONENTS, MANIFEST, MAX_COMPONENT_BYTES, SIGNATURE};
use crate::sanity::HostCaps;
use crate::verify::{verify_with, ImportCheck, VerifiedPackage};
use crate::{PackageError, TrustStore};

/// The largest archive accepted.
pub const MAX_ARCHIVE_BYTES: u64 = 256 << 20;
/// The most entries an archive may have.
pub const MAX_ARCHIVE_ENTRIES: usize = 1024;

/// A package unpacked into a temporary directory, removed when this is dropped.
#[derive(Debug)]
pub struct UnpackedPackage {
    dir: tempfile::TempDir,
}

impl UnpackedPackage {
    /// The package directory, to pass to [`crate::verify`].
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Unpacks the archive at `archive` into a new temporary directory (nothing is verified yet).
pub fn unpack(archive: &Path) -> Result<UnpackedPackage, PackageError> {
    let file = std::fs::File::open(archive).map_err(|e| PackageError::io(archive.display(), e))?;
    let len = file.metadata().map_err(|e| PackageError::io(archive.display(), e))?.len();
    if len > MAX_ARCHIVE_BYTES {
        return Err(PackageError::TooLarge { path: archive.display().to_string(), limit: MAX_ARCHIVE_BYTES });
    }
    let dir = tempfile::Builder::new()
        .prefix("airlock-package-")
        .tempdir()
        .map_err(|e| PackageError::io("temporary directory", e))?;
    let root = Dir::open_ambient_dir(dir.path(), ambient_authority())
        .map_err(|e| PackageError::io(dir.path().display(), e))?;
    unpack_into(file.take(MAX_ARCHIVE_BYTES), &root)?;
    Ok(UnpackedPackage { dir })
}

/// Unpacks, then [`verify_with`]s; the temporary directory is gone when this returns.
pub fn verify_archive(
    archive: &Path,
    trust: &TrustStore,
    caps: &HostCaps,
    check_imports: &ImportCheck<'_>,
) -> Result<VerifiedPackage, PackageError> {
    let unpacked = unpack(archive)?;
    verify_with(unpacked.path(), trust, caps, check_imports)
}

fn unpack_into(reader: impl Read, root: &Dir) -> Result<(), PackageError> {
    let malformed = |e: std::io::Error| PackageError::MalformedArchive(e.to_string());
    let mut archive = tar::Archive::new(reader);
    let mut total: u64 = 0;
    for (count, entry) in archive.entries().map_err(malformed)?.enumerate() {
        let mut entry = entry.map_err(malformed)?;
        if count >= MAX_ARCHIVE_ENTRIES {
            return Err(PackageError::MalformedArchive(format!("more than {MAX_ARCHIVE_ENTRIES} entries")));
        }
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let refuse = |reason: &str| PackageError::UnsafeArchiveEntry { path: raw.clone(), reason: reason.into() };
        let kind = entry.header().entry_type();
        let path = safe_path(&raw).map_err(|r| refuse(&r))?;
        match kind {
            EntryType::Symlink => return Err(refuse("is a symlink: a package holds regular files only")),
            EntryType::Link => return Err(refuse("is a hard link: a package holds regular files only")),
            EntryType::XGlobalHeader => continue,
            EntryType::Directory => {
                if !path.is_empty() {
                    root.create_dir_all(&path).map_err(|e| write_error(&raw, e))?;
                }
            }
            EntryType::Regular | EntryType::Continuous => {
                if path.is_empty() {
                    return Err(refuse("a file needs a name"));
                }
                let size = entry.header().size().map_err(malformed)?;
                total = total.saturating_add(size);
                if size > MAX_COMPONENT_BYTES {
                    return Err(PackageError::TooLarge { path: raw, limit: MAX_COMPONENT_BYTES });
                }
                if total > MAX_ARCHIVE_BYTES {
                    return Err(PackageError::TooLarge { path: raw, limit: MAX_ARCHIVE_BYTES });
                }
                if let Some((parent, _)) = path.rsplit_once('/') {
                    root.create_dir_all(parent).map_err(|e| write_error(&raw, e))?;
                }
                let mut out = root.open_with(&path, OpenOptions::new().write(true).create_new(true)).map_err(|e| {
                    match e.kind() {
                        ErrorKind::AlreadyExists => refuse("appears twice"),
                        _ => write_error(&raw, e),
                    }
                })?;
                let copied = std::io::copy(&mut (&mut entry).take(size), &mut out).map_err(malformed)?;
                if copied != size {
                    return Err(PackageError::MalformedArchive(format!("`{raw}` is truncated")));
                }
                out.flush().map_err(|e| PackageError::io(&raw, e))?;
            }
            _ => return Err(refuse("is not a regular file or directory")),
        }
    }
    Ok(())
}

/// The entry's path relative to the root, `/`-separated, or why it is refused.
fn safe_path(raw: &str) -> Result<String, String> {
    if raw.starts_with('/') {
        return Err("is an absolute path".into());
    }
    if raw.contains('\\') || raw.contains('\0') {
        return Err("contains a backslash or NUL".into());
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("contains `..`".into()),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

fn write_error(path: &str, e: std::io::Error) -> PackageError {
    if e.kind() == ErrorKind::PermissionDenied {
        PackageError::UnsafeArchiveEntry { path: path.into(), reason: format!("refused by the directory handle: {e}") }
    } else {
        PackageError::io(path, e)
    }
}

/// Writes the package in `package_dir` as a tar at `out`: the manifest, the signature (when
/// there is one) and the files in `components/`, read through the package handle. Entries
/// carry no owner or time, so the same package gives the same archive.
pub fn pack(package_dir: &Path, out: &Path) -> Result<(), PackageError> {
    let root = PackageRoot::open(package_dir)?;
    let mut names = vec![MANIFEST.to_string()];
    if root.dir().is_file(SIGNATURE) {
        names.push(SIGNATURE.to_string());
    }
    if root.dir().is_dir(COMPONENTS) {
        let dir = root.dir().open_dir(COMPONENTS).map_err(|e| PackageError::io(COMPONENTS, e))?;
        let mut files = Vec::new();
        for entry in dir.entries().map_err(|e| PackageError::io(COMPONENTS, e))? {
            let entry = entry.map_err(|e| PackageError::io(COMPONENTS, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            files.push(format!("{COMPONENTS}/{name}"));
        }
        files.sort();
        names.extend(files);
    }
    let file = std::fs::File::create(out).map_err(|e| PackageError::io(out.display(), e))?;
    let mut builder = tar::Builder::new(file);
    for name in names {
        let bytes = root.read(&name, MAX_COMPONENT_BYTES)?;
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(EntryType::Regular);
        builder.append_data(&mut header, &name, bytes.as_slice()).map_err(|e| PackageError::io(&name, e))?;
    }
    builder.into_inner().and_then(|f| f.sync_all()).map_err(|e| PackageError::io(out.display(), e))
}
