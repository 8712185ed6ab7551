//! The charts of docs/benchmarks.md are drawn from benches/results/*.csv by
//! benches/scripts/charts.py; its `--check` mode fails when a committed SVG differs from what
//! the CSVs give, so the pictures cannot drift from the figures.

use std::path::Path;
use std::process::Command;

#[test]
fn benchmark_charts_match_their_csv_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("python3")
        .arg(root.join("benches/scripts/charts.py"))
        .arg("--check")
        .output()
        .expect("python3 runs (the Debian package python3 is in .ci/run)");
    assert!(
        out.status.success(),
        "charts.py --check: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_mode_notices_a_changed_figure() {
    // The same script on a copy of the tree whose CSV has one figure changed must fail.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tmp = std::env::temp_dir().join(format!("vswitch-charts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    for dir in ["benches/scripts", "benches/results", "docs/img"] {
        std::fs::create_dir_all(tmp.join(dir)).unwrap();
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), tmp.join(dir).join(e.file_name())).unwrap();
        }
    }
    let csv = tmp.join("benches/results/flowmods.csv");
    let text = std::fs::read_to_string(&csv).unwrap();
    let changed = text.replacen("363643", "463643", 1);
    assert_ne!(text, changed, "the figure to change is in flowmods.csv");
    std::fs::write(&csv, changed).unwrap();
    let out = Command::new("python3")
        .arg(tmp.join("benches/scripts/charts.py"))
        .arg("--check")
        .output()
        .expect("python3 runs");
    let _ = std::fs::remove_dir_all(&tmp);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a changed CSV must make --check fail"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("docs/img/bench-flowmods.svg"));
}
