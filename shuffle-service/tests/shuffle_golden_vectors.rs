//! File-path golden vectors computed by Spark's own `ExecutorDiskUtils.getFilePath` (from the
//! pyspark 3.5.7 jars, run with `java`), compared with our resolver. Also checks Java's
//! `String.hashCode` on non-ASCII names.

use std::path::PathBuf;
use std::process::Command;

use croupier_shuffle_service::resolver::{file_path, java_string_hash};

const PROGRAM: &str = r#"
import org.apache.spark.network.shuffle.ExecutorDiskUtils;

public class Golden {
  public static void main(String[] args) {
    int subDirs = Integer.parseInt(args[0]);
    int nDirs = Integer.parseInt(args[1]);
    String[] dirs = java.util.Arrays.copyOfRange(args, 2, 2 + nDirs);
    for (int i = 2 + nDirs; i < args.length; i++) {
      String name = args[i];
      System.out.println(name.hashCode() + "\t" + ExecutorDiskUtils.getFilePath(dirs, subDirs, name));
    }
  }
}
"#;

fn names() -> Vec<String> {
    let mut v: Vec<String> = vec![
        "shuffle_0_5_0.data".into(),
        "shuffle_0_5_0.index".into(),
        "shuffle_12_34567_0.data".into(),
        "rdd_3_7".into(),
        "shuffle_0_0_0.checksum.ADLER32".into(),
        "polygenelubricants".into(), // hashCode == Integer.MIN_VALUE
        "shuffle_2147483647_9223372036854775807_0.index".into(),
        "rdd_ü_😀_名".into(),
    ];
    for s in 0..4 {
        for m in [0i64, 1, 7, 99, 4096, 123456789012] {
            v.push(format!("shuffle_{s}_{m}_0.data"));
            v.push(format!("shuffle_{s}_{m}_0.index"));
        }
    }
    v
}

#[test]
fn file_paths_match_sparks_executor_disk_utils() {
    croupier_testkit::require_venv!();
    let spark_home = croupier_testkit::env::spark_home();
    let jars = spark_home.join("jars");
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("Golden.java");
    std::fs::write(&src, PROGRAM).unwrap();
    let names = names();
    for (sub_dirs, dirs) in [
        (64, vec!["/data/blockmgr-a"]),
        (64, vec!["/d1/blockmgr-x", "/d2/blockmgr-y"]),
        (7, vec!["/a", "/b/", "/c"]),
        (
            256,
            vec![
                "/x/blockmgr-1",
                "/y/blockmgr-2",
                "/z/blockmgr-3",
                "/w/blockmgr-4",
            ],
        ),
    ] {
        let mut cmd = Command::new("java");
        cmd.arg("-cp")
            .arg(format!("{}/*", jars.display()))
            .arg(&src);
        cmd.arg(sub_dirs.to_string())
            .arg(dirs.len().to_string())
            .args(&dirs)
            .args(&names);
        let out = cmd.output().unwrap_or_else(|e| {
            panic!("cannot run java ({e}): Java 17 is required; run the suite with scripts/test.sh")
        });
        assert!(
            out.status.success(),
            "java failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), names.len(), "{text}");
        let dirs: Vec<String> = dirs.iter().map(|s| s.to_string()).collect();
        for (name, line) in names.iter().zip(lines) {
            let (hash, path) = line.split_once('\t').unwrap();
            assert_eq!(
                java_string_hash(name),
                hash.parse::<i32>().unwrap(),
                "hashCode of {name}"
            );
            assert_eq!(
                file_path(&dirs, sub_dirs, name),
                PathBuf::from(path),
                "path of {name} in {dirs:?}/{sub_dirs}"
            );
        }
    }
}
