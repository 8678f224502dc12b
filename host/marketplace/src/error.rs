//! The one error type of this crate: each variant is one check, and its message says which.

use std::fmt;

/// Why a package was refused, or why signing, building or unpacking failed.
///
/// Every message starts with the name of the failed check (`unsigned`, `unknown publisher`,
/// `bad signature`, `tampered component`, `invalid manifest`, ...) so a user who sees only the
/// text still knows which check refused the package; [`PackageError::check`] gives the same
/// as a stable identifier for programs.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// No `signature.json`: nobody vouches for the package.
    #[error("unsigned: the package has no `signature.json`")]
    Unsigned,
    /// `signature.json` is there but is not a signature this host understands.
    #[error("malformed signature: {0}")]
    MalformedSignature(String),
    /// The signing key is not in the trust store (or belongs to another publisher).
    #[error("unknown publisher `{publisher}` (key `{key_id}`): no trusted key matches")]
    UnknownPublisher { publisher: String, key_id: String },
    /// The signature does not verify over the package's signed payload.
    #[error("bad signature: the package was changed after signing or signed by another key")]
    BadSignature,
    /// `manifest.json` is not JSON of the manifest's shape (syntax, types, unknown fields).
    #[error("malformed manifest: {0}")]
    MalformedManifest(String),
    /// A component's bytes do not have the digest the (signed) manifest declares.
    #[error("tampered component `{component}`: sha256 {actual} != manifest {declared}")]
    TamperedComponent { component: String, actual: String, declared: String },
    /// A path inside the package tried to reach outside it (refused by the directory handle).
    #[error("path escape: `{path}` is outside the package directory ({reason})")]
    PathEscape { path: String, reason: String },
    /// A file the manifest lists is not in the package.
    #[error("missing file: `{0}` is listed in the manifest but not in the package")]
    MissingFile(String),
    /// A file in the package that the manifest does not list, or something that is not a
    /// regular file (a symlink, a directory where a file belongs, a device).
    #[error("unlisted file: `{path}` {reason}")]
    UnlistedFile { path: String, reason: String },
    /// A file or archive bigger than its cap.
    #[error("too large: `{path}` exceeds {limit} bytes")]
    TooLarge { path: String, limit: u64 },
    /// The manifest parsed but failed policy sanity; every violation, each with where it is.
    #[error("invalid manifest: {}", Joined(.0))]
    InvalidManifest(Vec<Violation>),
    /// The caller's import checker refused a component.
    #[error("forbidden imports in component `{component}`: {reason}")]
    ForbiddenImports { component: String, reason: String },
    /// An entry of a transport archive that could write outside, or is not a plain file.
    #[error("unsafe archive entry `{path}`: {reason}")]
    UnsafeArchiveEntry { path: String, reason: String },
    /// The archive is not a readable tar.
    #[error("malformed archive: {0}")]
    MalformedArchive(String),
    /// A key that cannot be used (bad base64, wrong length, not PKCS#8).
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// A publishing step (`build`, `sign`) that cannot go ahead.
    #[error("cannot build package: {0}")]
    Build(String),
    /// The file system failed under us.
    #[error("i/o error on `{path}`: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl PackageError {
    /// A stable identifier of the failed check, for APIs and the audit trail.
    pub fn check(&self) -> &'static str {
        match self {
            PackageError::Unsigned => "unsigned",
            PackageError::MalformedSignature(_) => "malformed-signature",
            PackageError::UnknownPublisher { .. } => "unknown-publisher",
            PackageError::BadSignature => "bad-signature",
            PackageError::MalformedManifest(_) => "malformed-manifest",
            PackageError::TamperedComponent { .. } => "tampered-component",
            PackageError::PathEscape { .. } => "path-escape",
            PackageError::MissingFile(_) => "missing-file",
            PackageError::UnlistedFile { .. } => "unlisted-file",
            PackageError::TooLarge { .. } => "too-large",
            PackageError::InvalidManifest(_) => "invalid-manifest",
            PackageError::ForbiddenImports { .. } => "forbidden-imports",
            PackageError::UnsafeArchiveEntry { .. } => "unsafe-archive-entry",
            PackageError::MalformedArchive(_) => "malformed-archive",
            PackageError::InvalidKey(_) => "invalid-key",
            PackageError::Build(_) => "build",
            PackageError::Io { .. } => "io",
        }
    }

    pub(crate) fn io(path: impl fmt::Display, source: std::io::Error) -> PackageError {
        PackageError::Io { path: path.to_string(), source }
    }
}

/// One failed policy-sanity rule: where in the manifest, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// A JSON path into the manifest, e.g. `tuples[3].object`.
    pub at: String,
    /// What is wrong, naming the offending value in backticks.
    pub reason: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.reason)
    }
}

struct Joined<'a>(&'a [Violation]);

impl fmt::Display for Joined<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{v}")?;
        }
        Ok(())
    }
}
