//! Embeds the web console (`web/`) in the binary: writes a table of every
//! file under it, each as `include_bytes!`, to `$OUT_DIR/console_assets.rs`.
//! No bundler and no Node: the console is plain ES modules, served as they
//! are in the repository (`src/http/console.rs`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

fn main() -> io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    println!("cargo:rerun-if-changed=web");
    let mut files = Vec::new();
    if root.is_dir() {
        walk(&root, &mut files)?;
    }
    files.sort();
    let mut table = String::from("&[\n");
    for path in &files {
        // Changes to a file (not only to the folder list) rebuild the table.
        println!("cargo:rerun-if-changed={}", path.display());
        let relative = path
            .strip_prefix(&root)
            .map_err(io::Error::other)?
            .to_string_lossy()
            .replace('\\', "/");
        table.push_str(&format!(
            "    ({relative:?}, include_bytes!({:?}) as &[u8]),\n",
            path.display().to_string()
        ));
    }
    table.push(']');
    let out = PathBuf::from(std::env::var("OUT_DIR").map_err(io::Error::other)?);
    fs::write(out.join("console_assets.rs"), table)
}

/// Every file under `dir`, skipping dot-files (editor swap files and the like).
fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if entry.file_type()?.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            walk(&path, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}
