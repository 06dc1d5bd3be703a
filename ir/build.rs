//! Embeds every `cascades/*.cascade` file (the library) and every `cascades/variants/*.cascade`
//! file (the model variants) so neither needs file I/O at run time.

use std::{env, fs, path::Path};

fn main() {
    println!("cargo:rerun-if-changed=cascades");
    println!("cargo:rerun-if-changed=cascades/variants");
    let mut code = index(
        Path::new("cascades"),
        "FILES",
        "Every library cascade: (name, source), sorted by name.",
    );
    code.push_str(&index(
        Path::new("cascades/variants"),
        "VARIANTS",
        "Every model variant: (name, source), sorted by name.",
    ));
    let out = Path::new(&env::var("OUT_DIR").expect("OUT_DIR")).join("library_files.rs");
    fs::write(out, code).expect("write library index");
}

/// `pub static NAME: &[(&str, &str)]` over the `.cascade` files of `dir`.
fn index(dir: &Path, name: &str, doc: &str) -> String {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|_| panic!("ir/{} exists", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cascade"))
        .collect();
    names.sort();
    let mut code = format!("/// {doc}\npub static {name}: &[(&str, &str)] = &[\n");
    for n in &names {
        let stem = n.trim_end_matches(".cascade");
        let path = fs::canonicalize(dir.join(n)).expect("cascade file path");
        code.push_str(&format!(
            "    ({stem:?}, include_str!({:?})),\n",
            path.display().to_string()
        ));
    }
    code.push_str("];\n");
    code
}
