//! For tool authors: a package from a folder.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::files::{PackageRoot, MANIFEST, MAX_COMPONENT_BYTES, MAX_MANIFEST_BYTES};
use crate::manifest::Manifest;
use crate::sanity::{HostCaps, Stage};
use crate::signature::{sign, SigningKey};
use crate::PackageError;

/// Limits are checked against the installing host's caps at install; an author's build does
/// not know them, so it only checks they are positive.
const ANY_HOST: HostCaps = HostCaps { deadline_ms: u64::MAX, memory_mib: u64::MAX, fuel: u64::MAX };

/// Builds a signed package in `out` (created; must be absent or empty) from the author's
/// `folder`, whose `manifest.json` may leave out `sha256` and point `file` at the built
/// `.wasm` relative to the folder. A tool whose `file` is not there is looked up as
/// `COMPONENT.wasm` (or with `-` as `_`, as cargo names its outputs) in each of `search`, in
/// order, so a catalog manifest can name the plugin build directory's output.
///
/// Validates the source manifest, copies each component to `components/COMPONENT.wasm`,
/// writes the manifest with the digests filled in (a digest the author pinned must match),
/// validates it as a package and signs it with `key`. Returns `out`.
pub fn build(folder: &Path, out: &Path, key: &SigningKey, search: &[&Path]) -> Result<PathBuf, PackageError> {
    let source = read_capped(&folder.join(MANIFEST), MAX_MANIFEST_BYTES)?;
    let mut manifest = Manifest::parse(&source)?;
    manifest.validate(Stage::Source, &ANY_HOST)?;

    std::fs::create_dir_all(out).map_err(|e| PackageError::io(out.display(), e))?;
    let root = PackageRoot::open(out)?;
    if root.dir().entries().map_err(|e| PackageError::io(out.display(), e))?.next().is_some() {
        return Err(PackageError::Build(format!("`{}` is not empty", out.display())));
    }

    for tool in &mut manifest.tools {
        let path = locate(folder, &tool.file, &tool.component, search)?;
        let bytes = read_capped(&path, MAX_COMPONENT_BYTES)?;
        let digest = hex::encode(Sha256::digest(&bytes));
        if let Some(pinned) = tool.sha256.as_deref().filter(|p| *p != digest) {
            return Err(PackageError::Build(format!(
                "component `{}`: `{}` has sha256 {digest}, the manifest pins {pinned}",
                tool.component,
                path.display()
            )));
        }
        tool.file = format!("components/{}.wasm", tool.component);
        tool.sha256 = Some(digest);
        root.write(&tool.file, &bytes)?;
    }
    manifest.validate(Stage::Package, &ANY_HOST)?;
    root.write(MANIFEST, &manifest.to_json()?)?;
    sign(out, key)?;
    Ok(out.to_path_buf())
}

fn locate(folder: &Path, file: &str, component: &str, search: &[&Path]) -> Result<PathBuf, PackageError> {
    let direct = folder.join(file);
    if direct.is_file() {
        return Ok(direct);
    }
    let names = [format!("{component}.wasm"), format!("{}.wasm", component.replace('-', "_"))];
    search.iter().flat_map(|dir| names.iter().map(move |n| dir.join(n))).find(|p| p.is_file()).ok_or_else(|| {
        PackageError::Build(format!(
            "component `{component}`: `{file}` is not in `{}` nor in the search directories",
            folder.display()
        ))
    })
}

/// The author's own files, read with a cap (they are the author's, so no handle is needed).
fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, PackageError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| PackageError::io(path.display(), e))?;
    let mut bytes = Vec::new();
    file.take(cap + 1).read_to_end(&mut bytes).map_err(|e| PackageError::io(path.display(), e))?;
    if bytes.len() as u64 > cap {
        return Err(PackageError::TooLarge { path: path.display().to_string(), limit: cap });
    }
    Ok(bytes)
}
