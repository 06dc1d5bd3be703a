//! Files the CLI writes. Each goes through a temporary file in the target's own directory and a
//! rename, so no reader ever sees half a file, a failed run leaves the old file (or none)
//! behind, and only the files a command names are ever replaced; every failure is a user error
//! naming the path and the OS error.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use crate::output::UserError;

/// The user error for a failed file operation: `cannot {action} {path}: {OS error}`.
pub fn error(action: &str, path: &Path, e: &io::Error) -> UserError {
    UserError::message(format!("cannot {action} {}: {e}", path.display()))
}

/// Writes `bytes` to `path` through a temporary file beside it and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), UserError> {
    write_via_temporary(path, bytes).map_err(|e| error("write", path, &e))
}

fn write_via_temporary(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let (temporary, mut file) = create_temporary(&dir, &name.to_string_lossy())?;
    let result = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| fs::rename(&temporary, path));
    if result.is_err() {
        // Ours alone: `create_new` made it.
        let _ = fs::remove_file(&temporary);
    }
    result
}

/// A new file `.NAME.PID.N.tmp` in `dir`, never one that already exists.
fn create_temporary(dir: &Path, name: &str) -> io::Result<(PathBuf, fs::File)> {
    let mut attempt = 0u32;
    loop {
        let path = dir.join(format!(".{name}.{}.{attempt}.tmp", std::process::id()));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Makes sure `dir` is a directory a command may write its files into: created when missing;
/// when it exists and holds anything, refused unless `force` (then only the command's own files
/// are replaced, nothing is removed). `flag` names the option in messages.
pub fn output_dir(dir: &Path, flag: &str, force: bool) -> Result<(), UserError> {
    match fs::metadata(dir) {
        Ok(m) if !m.is_dir() => Err(UserError::message(format!(
            "{flag} {} exists and is not a directory; give a directory (created if missing)",
            dir.display()
        ))),
        Ok(_) => {
            let entries = fs::read_dir(dir).map_err(|e| error("read", dir, &e))?;
            let mut names: Vec<String> = entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            if names.is_empty() || force {
                return Ok(());
            }
            names.sort();
            let shown = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
            let more = if names.len() > 5 { ", …" } else { "" };
            Err(UserError::message(format!(
                "{flag} {} is not empty (it holds {shown}{more}); choose an empty or new directory, or pass --force to replace this command's files there (nothing else is touched)",
                dir.display()
            )))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(|e| error("create", dir, &e))
        }
        Err(e) => Err(error("read", dir, &e)),
    }
}
