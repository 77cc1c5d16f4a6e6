//! The front end's files under `/pkg`: served precompressed (brotli or gzip, from the
//! `.br`/`.gz` files a release build writes beside each file) when the browser takes
//! it, and cached for a year when their names carry a content hash, since a new build
//! gives new names.

use axum::extract::Request;
use axum::http::header::CACHE_CONTROL;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tower_http::services::ServeDir;

/// Cache-Control for hashed file names: a year, and never revalidated.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Cache-Control for unhashed names (a development build): revalidate every time.
pub const REVALIDATE: &str = "no-cache";

/// The service for the `pkg` folder of the site root.
pub fn pkg_service(site_root: &str, pkg_dir: &str) -> ServeDir {
    ServeDir::new(std::path::Path::new(site_root).join(pkg_dir)).precompressed_br().precompressed_gzip()
}

/// Middleware for the `pkg` route: the cache policy, on successful answers only.
pub async fn cache_policy(hashed: bool, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if response.status().is_success() || response.status().as_u16() == 304 {
        let value = if hashed { IMMUTABLE } else { REVALIDATE };
        response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static(value));
    }
    response
}

/// How the page should name the front-end files: whether they carry a content hash,
/// and the file that lists the hashes (leptos reads it relative to the server binary,
/// or from an absolute path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashing {
    pub hashed: bool,
    pub hash_file: String,
}

/// Finds out whether the build named its front-end files by content hash.
/// The build leaves the hash list (`hash.txt`) beside the server binary, where leptos
/// reads it on every page. A binary moved away from its list still serves a working
/// page: the hashes are read off the names in the site's `pkg` folder and the list is
/// written as `list_path` (beside the database, in a folder this server holds alone).
/// `LEPTOS_HASH_FILES=false` turns hashed names off.
pub fn hashing(site_root: &str, pkg_dir: &str, output_name: &str, list_path: &std::path::Path) -> Hashing {
    let name = std::env::var("LEPTOS_HASH_FILE_NAME").unwrap_or_else(|_| "hash.txt".into());
    let unhashed = Hashing { hashed: false, hash_file: name.clone() };
    if std::env::var("LEPTOS_HASH_FILES").is_ok_and(|v| v == "false") {
        return unhashed;
    }
    let beside_binary = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|dir| dir.join(&name)));
    if beside_binary.is_some_and(|p| p.is_file()) {
        return Hashing { hashed: true, hash_file: name };
    }
    let pkg = std::path::Path::new(site_root).join(pkg_dir);
    if let Some(list) = hashes_from_names(&pkg, output_name) {
        let absolute = std::path::absolute(list_path).unwrap_or_else(|_| list_path.to_path_buf());
        match std::fs::write(&absolute, list) {
            Ok(()) => return Hashing { hashed: true, hash_file: absolute.to_string_lossy().into_owned() },
            Err(e) => tracing::warn!("cannot write the front end's hash list to {}: {e}", absolute.display()),
        }
    }
    unhashed
}

/// The hash list (`js: …`, `wasm: …`, `css: …`) of a `pkg` folder whose files are
/// named `<output>.<hash>.<ext>`, when it holds no unhashed script and exactly one
/// hashed file of each kind.
fn hashes_from_names(pkg: &std::path::Path, output_name: &str) -> Option<String> {
    if pkg.join(format!("{output_name}.js")).is_file() {
        return None;
    }
    let mut found: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for entry in std::fs::read_dir(pkg).ok()?.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = file.strip_prefix(output_name).and_then(|r| r.strip_prefix('.')) else { continue };
        for ext in ["js", "wasm", "css"] {
            if let Some(hash) = rest.strip_suffix(&format!(".{ext}")) {
                if !hash.is_empty() && !hash.contains('.') {
                    found.entry(ext).or_default().push(hash.to_string());
                }
            }
        }
    }
    let one = |ext: &str| match found.get(ext).map(Vec::as_slice) {
        Some([hash]) => Some(hash.clone()),
        _ => None,
    };
    Some(format!("js: {}\nwasm: {}\ncss: {}\n", one("js")?, one("wasm")?, one("css")?))
}

/// Writes a brotli (`.br`) and a gzip (`.gz`) copy beside every JavaScript, WebAssembly,
/// CSS and SVG file under `dir`, at the strongest settings: they are made once per
/// build and sent many times. Returns how many files it compressed.
pub fn precompress(dir: &std::path::Path) -> std::io::Result<usize> {
    let mut count = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            count += precompress(&path)?;
            continue;
        }
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !matches!(ext, "js" | "wasm" | "css" | "svg") {
            continue;
        }
        let bytes = std::fs::read(&path)?;
        std::fs::write(format!("{}.gz", path.display()), gzip_best(&bytes)?)?;
        std::fs::write(format!("{}.br", path.display()), brotli_best(&bytes)?)?;
        count += 1;
    }
    Ok(count)
}

/// `bytes` gzipped at the strongest level.
pub fn gzip_best(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(bytes)?;
    gz.finish()
}

/// `bytes` in brotli at the strongest quality (11).
pub fn brotli_best(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut br = Vec::new();
    let params = brotli::enc::BrotliEncoderParams { quality: 11, ..Default::default() };
    brotli::BrotliCompress(&mut &bytes[..], &mut br, &params)?;
    Ok(br)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_read_off_the_names_when_the_list_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["app.Ab1.js", "app.Cd2.wasm", "app.Ef3.css", "app.Ab1.js.br", "app.Cd2.wasm.gz", "other.Zz.js"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        assert_eq!(hashes_from_names(dir.path(), "app").as_deref(), Some("js: Ab1\nwasm: Cd2\ncss: Ef3\n"));
        // Two builds' files side by side: no guessing.
        std::fs::write(dir.path().join("app.Gh4.js"), "x").unwrap();
        assert_eq!(hashes_from_names(dir.path(), "app"), None);
        // An unhashed build: nothing to read.
        std::fs::write(dir.path().join("app.js"), "x").unwrap();
        assert_eq!(hashes_from_names(dir.path(), "app"), None);
    }

    #[test]
    fn precompressed_copies_decode_to_the_file() {
        use std::io::Read;
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("pkg");
        std::fs::create_dir(&sub).unwrap();
        let text = "function hydrate() { return 42; }\n".repeat(200);
        std::fs::write(sub.join("app.js"), &text).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a front-end file").unwrap();
        assert_eq!(precompress(dir.path()).unwrap(), 1);
        let mut from_gz = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(sub.join("app.js.gz")).unwrap())
            .read_to_string(&mut from_gz)
            .unwrap();
        assert_eq!(from_gz, text);
        let mut from_br = String::new();
        brotli::Decompressor::new(std::fs::File::open(sub.join("app.js.br")).unwrap(), 4096)
            .read_to_string(&mut from_br)
            .unwrap();
        assert_eq!(from_br, text);
        assert!(std::fs::metadata(sub.join("app.js.br")).unwrap().len() < text.len() as u64 / 10);
        assert!(!dir.path().join("notes.txt.gz").exists());
    }
}
