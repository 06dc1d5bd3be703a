//! `cascade report`: the page is self-contained (no script, nothing fetched), holds the
//! comparison table `compare` prints and every figure, and loads in a real headless Chromium
//! without a console message; a screenshot of it is taken (`target/tmp/report.png`).
//!
//! Chromium comes from Debian's `chromium` package (`scripts/test` installs it as root). Without
//! it the browser checks are skipped with the reason printed, except under `CI=true`, where a
//! missing browser fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{run, stdout};

/// The headless browser: `$CASCADE_CHROMIUM`, else `chromium` or `chromium-browser` on PATH.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CASCADE_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|p| p.is_file())
}

/// Runs the browser headless on `page` with `args`; returns (stdout, stderr). A run past a
/// minute is killed and fails the test.
fn browse(browser: &Path, page: &Path, args: &[&str]) -> (String, String) {
    let profile = scratch("profile");
    // Files, not pipes: a page's DOM is larger than a pipe's buffer, and an unread pipe would
    // stall the browser.
    let (out_path, err_path) = (profile.join("stdout"), profile.join("stderr"));
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--enable-logging=stderr",
            "--v=0",
            // Nothing may come from a network: the page is self-contained.
            "--host-resolver-rules=MAP * ~NOTFOUND",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdout(std::fs::File::create(&out_path).expect("a file for stdout"))
        .stderr(std::fs::File::create(&err_path).expect("a file for stderr"))
        .spawn()
        .expect("the browser starts");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("the browser runs").is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("{} did not finish in a minute", browser.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let read =
        |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    let output = (read(&out_path), read(&err_path));
    let _ = std::fs::remove_dir_all(&profile);
    output
}

/// Lines of the browser's log that are the page's console messages.
fn console_messages(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains(":CONSOLE")).collect()
}

fn scratch(name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "cascade-report-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Width and height from a PNG's IHDR chunk, after checking the signature.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(bytes.len() > 24, "a PNG has a header");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "the PNG signature");
    assert_eq!(&bytes[12..16], b"IHDR", "IHDR comes first");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

/// A report of FuseMax against FLAT at BERT 1K and 4K, before its own flags.
const FUSEMAX_VS_FLAT: [&str; 9] = [
    "report",
    "--arch",
    "fusemax",
    "--vs",
    "flat",
    "--workload",
    "bert",
    "--seq",
    "1k,4k",
];

#[test]
fn the_report_is_one_self_contained_page_that_a_browser_loads() {
    let dir = scratch("page");
    let page = dir.join("report.html");
    let page_arg = page.to_string_lossy().into_owned();
    let (code, _, err) = run(&[
        &FUSEMAX_VS_FLAT[..],
        &[
            "--sweep-pe-dim",
            "64..256",
            "--breakdown-at",
            "bert  4k",
            "--out",
            &page_arg,
        ],
    ]
    .concat());
    assert_eq!(code, 0, "{err}");
    let html = std::fs::read_to_string(&page).expect("the page was written");
    assert!(
        html.contains("<p>At BERT 4K.</p>"),
        "the breakdowns are at the point asked for"
    );

    // Self-contained: no script, stylesheet link, image source or font; the only URL is the
    // SVG namespace, which names and fetches nothing.
    for banned in ["<script", "<link", "src=", "@import", "url(", "@font-face"] {
        assert!(!html.contains(banned), "the page holds {banned}");
    }
    let urls = html.matches("http").count();
    let namespaces = html.matches("http://www.w3.org/2000/svg").count();
    assert_eq!(urls, namespaces, "every URL is the SVG namespace");

    // The comparison table is `compare`'s, cell for cell: its BERT 1K row.
    let compare = run(&[
        "compare",
        "--arch",
        "fusemax",
        "--vs",
        "flat",
        "--workload",
        "bert",
        "--seq",
        "1k,4k",
    ]);
    assert_eq!(compare.0, 0, "{}", compare.2);
    let row = compare
        .1
        .lines()
        .find(|l| l.starts_with("| BERT ") && l.contains("1K"))
        .expect("compare prints BERT 1K");
    let cells: Vec<&str> = row
        .split('|')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    let html_row = format!("<tr><td>{}</td></tr>", cells.join("</td><td>"));
    assert!(
        html.contains(&html_row),
        "the report has compare's row {html_row}"
    );

    // Two architectures: three breakdown figures and a utilisation figure each, the roofline
    // and the sweep's Pareto front: ten charts.
    let figures = [
        "time-0",
        "energy-einsum-0",
        "energy-tensor-0",
        "time-1",
        "energy-einsum-1",
        "energy-tensor-1",
        "utilisation-0",
        "utilisation-1",
        "roofline",
        "pareto",
    ];
    for id in figures {
        assert!(
            html.contains(&format!("<figure id=\"{id}\">\n<svg")),
            "figure {id}"
        );
    }
    assert_eq!(html.matches("<svg").count(), figures.len());

    let Some(browser) = chromium() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: the report's browser test needs chromium (apt-get install chromium; scripts/test installs it)"
        );
        eprintln!(
            "skipping the browser checks of the report: no chromium on PATH (apt-get install chromium)"
        );
        return;
    };

    // The console detector sees a page's console: a page that logs an error is caught.
    let bad = dir.join("bad.html");
    std::fs::write(
        &bad,
        "<!DOCTYPE html><p>x</p><script>console.error('seen')</script>",
    )
    .unwrap();
    let (_, log) = browse(&browser, &bad, &["--dump-dom"]);
    assert!(
        console_messages(&log).iter().any(|l| l.contains("seen")),
        "the browser log shows console messages:\n{log}"
    );

    // The page: parsed by the browser with its table and every figure, and no console message.
    let (dom, log) = browse(&browser, &page, &["--dump-dom"]);
    assert!(
        console_messages(&log).is_empty(),
        "console: {:?}",
        console_messages(&log)
    );
    assert!(
        dom.contains("<table id=\"comparison\">"),
        "the DOM has the table"
    );
    assert!(dom.contains(&html_row), "the DOM has compare's row");
    assert_eq!(
        dom.matches("<svg").count(),
        figures.len(),
        "the DOM has every chart"
    );
    assert!(dom.matches("<figcaption>").count() == figures.len());

    // A screenshot at the window's size, kept for a look at target/tmp/report.png.
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report.png");
    let _ = std::fs::remove_file(&shot);
    let (_, log) = browse(
        &browser,
        &page,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1100,4000",
            "--hide-scrollbars",
        ],
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot ({e}):\n{log}"));
    assert_eq!(png_size(&png), (1100, 4000));
    // A blank page compresses to a few kB; charts and tables do not.
    assert!(
        png.len() > 50_000,
        "the screenshot shows the page: {} bytes",
        png.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_report_names_what_it_cannot_draw() {
    // A sweep range the parser refuses, and a baseline that does not exist.
    let out = crate::support::cascade(&[
        "report",
        "--arch",
        "fusemax",
        "--vs",
        "flat",
        "--workload",
        "bert",
        "--seq",
        "1k",
        "--sweep-pe-dim",
        "512..16",
        "--out",
        "/nonexistent/report.html",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("512..16"), "{err}");
    // A breakdown point that is not in the table is named with the ones that are.
    let (code, _, err) = run(&[
        &FUSEMAX_VS_FLAT[..],
        &[
            "--breakdown-at",
            "BERT 2K",
            "--out",
            "/nonexistent/report.html",
        ],
    ]
    .concat());
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("BERT 2K") && err.contains("BERT 1K, BERT 4K"),
        "{err}"
    );
    let (code, _, err) = run(&[
        "report",
        "--arch",
        "fusemax",
        "--vs",
        "nosuch",
        "--out",
        "/nonexistent/report.html",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("nosuch"), "{err}");
}
