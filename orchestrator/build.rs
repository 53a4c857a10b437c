//! Builds the browser app (`web/`, Vite) into `OUT_DIR` and writes the list of its files for `webui` to embed,
//! so `cargo run -- serve` serves the app and one binary deploys. Runs again only when the app's sources
//! change, installing the locked packages first when they aren't. Needs Node.js (20 or newer) and npm; `LIVECLASS_SKIP_WEB_BUILD=1` builds the server without the app
//! (then `/` says how to get it, or `web_dir` serves a build from disk).

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

const SOURCES: &[&str] = &["src", "index.html", "package.json", "package-lock.json", "vite.config.ts", "tsconfig.json"];

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let web = manifest.join("..").join("web");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let dist = out.join("web");
    for source in SOURCES {
        println!("cargo:rerun-if-changed={}", web.join(source).display());
    }
    println!("cargo:rerun-if-env-changed=LIVECLASS_SKIP_WEB_BUILD");
    let skip = env::var("LIVECLASS_SKIP_WEB_BUILD").is_ok_and(|v| !v.is_empty() && v != "0");
    let files = if skip {
        println!("cargo:warning=LIVECLASS_SKIP_WEB_BUILD is set: the binary serves no browser app of its own");
        Vec::new()
    } else {
        build(&web, &dist);
        let mut files = Vec::new();
        collect(&dist, &dist, &mut files);
        files.sort();
        files
    };
    let mut list = String::from("/// The built browser app: (path below the site root, contents).\n");
    list.push_str("pub static FILES: &[(&str, &[u8])] = &[\n");
    for (name, path) in &files {
        list.push_str(&format!("    ({name:?}, include_bytes!({:?})),\n", path.display().to_string()));
    }
    list.push_str("];\n");
    fs::write(out.join("web_files.rs"), list).expect("write web_files.rs");
}

/// `npm ci` when the packages aren't installed, then the app's own build (type check and Vite) into `dist`.
fn build(web: &Path, dist: &Path) {
    let node = Command::new("node").arg("--version").output();
    if !node.as_ref().is_ok_and(|o| o.status.success()) {
        panic!(
            "\n\nBuilding liveclass builds its browser app, which needs Node.js 20 or newer and npm \
             (Debian: apt-get install nodejs npm).\nInstall them, or set LIVECLASS_SKIP_WEB_BUILD=1 to build \
             the server without the app.\n\n"
        );
    }
    // npm writes node_modules/.package-lock.json when it installs: older than package-lock.json means the
    // installed packages are not the locked ones.
    let modified = |p: PathBuf| fs::metadata(p).and_then(|m| m.modified()).ok();
    let installed = modified(web.join("node_modules").join(".package-lock.json"));
    if installed.is_none() || installed < modified(web.join("package-lock.json")) {
        run(web, &["ci", "--no-audit", "--no-fund", "--loglevel=error"]);
    }
    let out_dir = dist.display().to_string();
    run(web, &["run", "build", "--", "--outDir", &out_dir, "--emptyOutDir"]);
}

fn run(dir: &Path, args: &[&str]) {
    let output = Command::new("npm").args(args).current_dir(dir).output().unwrap_or_else(|e| {
        panic!("\n\nnpm could not be started ({e}): building the browser app needs Node.js 20+ and npm\n\n")
    });
    if !output.status.success() {
        panic!(
            "\n\n`npm {}` in {} failed:\n{}\n{}\n",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Every file below `dir` but source maps (they stay out of the binary).
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    for entry in fs::read_dir(dir).expect("read the app's build") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            collect(root, &path, files);
        } else if path.extension().is_none_or(|e| e != "map") {
            let name = path.strip_prefix(root).expect("below the root").to_string_lossy().replace('\\', "/");
            files.push((name, path));
        }
    }
}
