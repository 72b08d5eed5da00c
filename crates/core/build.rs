//! Compiles the catalogue of pre-approved procedures (`catalogue/*.json` at the repository
//! root) into the crate: the deployed functions carry exactly the reviewed files.
//!
//! Paths stay relative to the crate (`rerun-if-changed`, and `include_str!` through the crate's
//! own `CARGO_MANIFEST_DIR`): the build script's output may be reused by a checkout at another
//! path that shares the target directory (CI's clone and the working tree do).

use std::path::Path;

const DIR: &str = "../../catalogue";

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest).join(DIR);
    println!("cargo:rerun-if-changed={DIR}");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("a catalogue entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    let mut out = String::from("&[\n");
    for name in names {
        println!("cargo:rerun-if-changed={DIR}/{name}");
        out.push_str(&format!(
            "    ({name:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/{DIR}/{name}\"))),\n"
        ));
    }
    out.push(']');
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("catalogue.rs");
    std::fs::write(dest, out).expect("writing catalogue.rs");
}
