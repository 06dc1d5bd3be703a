//! Embeds every `cascades/*.cascade` file so the library needs no file I/O at run time.

use std::{env, fs, path::Path};

fn main() {
    let dir = Path::new("cascades");
    println!("cargo:rerun-if-changed=cascades");
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("ir/cascades exists")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cascade"))
        .collect();
    names.sort();
    let mut code = String::from(
        "/// Every library cascade: (name, source), sorted by name.\npub static FILES: &[(&str, &str)] = &[\n",
    );
    for n in &names {
        let stem = n.trim_end_matches(".cascade");
        let path = fs::canonicalize(dir.join(n)).expect("cascade file path");
        code.push_str(&format!(
            "    ({stem:?}, include_str!({:?})),\n",
            path.display().to_string()
        ));
    }
    code.push_str("];\n");
    let out = Path::new(&env::var("OUT_DIR").expect("OUT_DIR")).join("library_files.rs");
    fs::write(out, code).expect("write library index");
}
