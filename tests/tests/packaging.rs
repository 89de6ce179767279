//! The Debian packages `scripts/package` builds, from this test's own
//! (debug) binaries: their contents, control fields, conffiles and
//! maintainer scripts; that building twice gives identical bytes; that the
//! shipped units pass `systemd-analyze verify` against the package's own
//! files; that the sysusers.d entry makes a `weir` user in `adm`; and, the
//! strongest check, installing, running, removing and purging both packages
//! in a clean Debian root (`debootstrap --variant=minbase`, made once by
//! `scripts/test` under target/debian-root) with chroot.
//!
//! One test builds the packages once and checks everything against them:
//! packaging takes a while (stripping, compressing), so it is not repeated.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use weir_tests::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).into_owned()
}

/// Builds both packages into `out`; returns (agent, collector) .deb paths.
fn build(out: &Path) -> (PathBuf, PathBuf) {
    let printed = text(
        Command::new(repo().join("scripts/package"))
            .args([
                "--profile",
                "dev",
                "--no-build",
                "--compress",
                "gzip",
                "--bin-dir",
            ])
            .arg(bin_dir())
            .arg("--out")
            .arg(out)
            .env("SOURCE_DATE_EPOCH", "1700000000"),
    );
    let debs: Vec<PathBuf> = printed.lines().map(PathBuf::from).collect();
    assert_eq!(debs.len(), 2, "{printed}");
    (debs[0].clone(), debs[1].clone())
}

fn contents(deb: &Path) -> Vec<String> {
    text(Command::new("dpkg-deb").arg("-c").arg(deb))
        .lines()
        .map(|l| l.split_whitespace().last().unwrap_or("").to_owned())
        .collect()
}

fn field(deb: &Path, name: &str) -> String {
    text(Command::new("dpkg-deb").args(["-f"]).arg(deb).arg(name))
        .trim()
        .to_owned()
}

fn control_file(deb: &Path, name: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb").arg("-e").arg(deb).arg(dir.path()));
    std::fs::read_to_string(dir.path().join(name)).unwrap_or_default()
}

fn check_agent_package(deb: &Path) {
    let files = contents(deb);
    for want in [
        "./usr/bin/weir",
        "./usr/lib/systemd/system/weir.service",
        "./usr/lib/sysusers.d/weir.conf",
        "./etc/weir/pipeline.yaml",
        "./etc/default/weir",
        "./usr/share/man/man1/weir.1.gz",
        "./usr/share/man/man1/weir-run.1.gz",
        "./usr/share/man/man1/weir-validate.1.gz",
        "./usr/share/bash-completion/completions/weir",
        "./usr/share/zsh/vendor-completions/_weir",
        "./usr/share/fish/vendor_completions.d/weir.fish",
        "./usr/share/doc/weir/copyright",
    ] {
        assert!(
            files.iter().any(|f| f == want),
            "{want} missing from {files:?}"
        );
    }
    // The hidden generator is not documented.
    assert!(
        !files.iter().any(|f| f.contains("weir-generate")),
        "{files:?}"
    );
    assert!(!files.iter().any(|f| f.contains("collector")), "{files:?}");
    assert_eq!(field(deb, "Package"), "weir");
    assert!(
        field(deb, "Depends").contains("libc6"),
        "{}",
        field(deb, "Depends")
    );
    let info = text(Command::new("dpkg-deb").arg("-I").arg(deb));
    for script in ["postinst", "prerm", "postrm", "conffiles", "md5sums"] {
        assert!(info.contains(script), "{script} missing:\n{info}");
    }
    assert_eq!(
        control_file(deb, "conffiles"),
        "/etc/weir/pipeline.yaml\n/etc/default/weir\n"
    );
    let postinst = control_file(deb, "postinst");
    assert!(
        postinst.contains("systemd-sysusers weir.conf"),
        "{postinst}"
    );
    assert!(
        postinst.contains("systemctl enable weir.service"),
        "{postinst}"
    );
    assert!(
        postinst.contains("/usr/bin/weir validate -c /etc/weir/pipeline.yaml"),
        "{postinst}"
    );
    assert!(postinst.contains("try-restart weir.service"), "{postinst}");
    assert!(!postinst.contains('@'), "unexpanded template: {postinst}");
    let prerm = control_file(deb, "prerm");
    assert!(prerm.contains("systemctl stop weir.service"), "{prerm}");
    let postrm = control_file(deb, "postrm");
    assert!(
        postrm.contains("purge)\n        rm -rf /var/lib/weir\n"),
        "{postrm}"
    );
    // Every maintainer script is valid shell.
    for s in [postinst, prerm, postrm] {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("script");
        std::fs::write(&f, s).unwrap();
        run(Command::new("sh").arg("-n").arg(&f));
    }
}

fn check_collector_package(deb: &Path) {
    let files = contents(deb);
    for want in [
        "./usr/bin/weir-collector",
        "./usr/lib/systemd/system/weir-collector.service",
        "./usr/lib/sysusers.d/weir-collector.conf",
        "./etc/weir/collector.yaml",
        "./etc/default/weir-collector",
        "./usr/share/man/man1/weir-collector.1.gz",
        "./usr/share/man/man1/weir-collector-serve.1.gz",
        "./usr/share/bash-completion/completions/weir-collector",
        "./usr/share/zsh/vendor-completions/_weir-collector",
        "./usr/share/fish/vendor_completions.d/weir-collector.fish",
    ] {
        assert!(
            files.iter().any(|f| f == want),
            "{want} missing from {files:?}"
        );
    }
    assert_eq!(field(deb, "Package"), "weir-collector");
    assert_eq!(
        control_file(deb, "conffiles"),
        "/etc/weir/collector.yaml\n/etc/default/weir-collector\n"
    );
    let postinst = control_file(deb, "postinst");
    assert!(
        postinst.contains("/usr/bin/weir-collector validate -c /etc/weir/collector.yaml"),
        "{postinst}"
    );
}

/// `systemd-analyze verify` of the packaged units against the package's
/// own files: the binaries (the units' paths pointed at the extracted
/// ones) and the man pages their `Documentation=` names (through MANPATH).
fn check_units_verify(agent: &Path, collector: &Path) {
    let root = tempfile::tempdir().unwrap();
    for deb in [agent, collector] {
        run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(root.path()));
    }
    let units = tempfile::tempdir().unwrap();
    let bin = root.path().join("usr/bin");
    for unit in ["weir.service", "weir-collector.service"] {
        let text =
            std::fs::read_to_string(root.path().join("usr/lib/systemd/system").join(unit)).unwrap();
        let text = text.replace("/usr/bin/", &format!("{}/", bin.display()));
        let path = units.path().join(unit);
        std::fs::write(&path, text).unwrap();
        let out = run(Command::new("systemd-analyze")
            .args(["verify", "--man=yes"])
            .arg(&path)
            .env("MANPATH", root.path().join("usr/share/man")));
        let noise = String::from_utf8_lossy(&out.stderr);
        assert!(noise.trim().is_empty(), "{unit}: {noise}");
    }
    // The sysusers.d entry makes the agent's user, in adm.
    run(Command::new("systemd-sysusers").arg(format!("--root={}", root.path().display())));
    let group = std::fs::read_to_string(root.path().join("etc/group")).unwrap();
    let adm = group.lines().find(|l| l.starts_with("adm:")).unwrap_or("");
    assert!(
        adm.ends_with(":weir") || adm.contains(":weir,") || adm.contains(",weir"),
        "{adm}"
    );
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    assert!(passwd.lines().any(|l| l.starts_with("weir:")), "{passwd}");
    assert!(
        passwd.lines().any(|l| l.starts_with("weir-collector:")),
        "{passwd}"
    );
}

/// The clean Debian root `scripts/test` makes (or `WEIR_DEBIAN_ROOT`).
fn debian_root() -> PathBuf {
    let root = std::env::var_os("WEIR_DEBIAN_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/debian-root"));
    assert!(
        root.join("usr/bin/dpkg").exists(),
        "no Debian root at {}: scripts/test makes it (debootstrap --variant=minbase)",
        root.display()
    );
    root
}

/// Runs `args` inside the chroot.
fn chroot(root: &Path, args: &[&str]) -> Output {
    Command::new("chroot")
        .arg(root)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap()
}

fn chroot_ok(root: &Path, args: &[&str]) -> String {
    let out = chroot(root, args);
    assert!(
        out.status.success(),
        "chroot {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh copy of the clean root, so that every run starts clean.
fn fresh_root(base: &Path) -> tempfile::TempDir {
    let copy = tempfile::Builder::new()
        .prefix("weir-debroot-")
        .tempdir_in(repo().join("target"))
        .unwrap();
    run(Command::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(format!("{}/.", base.display()))
        .arg(copy.path()));
    copy
}

fn check_install_in_a_clean_debian_root(agent: &Path, collector: &Path) {
    let root = fresh_root(&debian_root());
    let r = root.path();
    for deb in [agent, collector] {
        std::fs::copy(deb, r.join("tmp").join(deb.file_name().unwrap())).unwrap();
    }
    let name = |deb: &Path| format!("/tmp/{}", deb.file_name().unwrap().to_string_lossy());
    chroot_ok(r, &["dpkg", "-i", &name(agent), &name(collector)]);

    let version = chroot_ok(r, &["weir", "--version"]);
    assert_eq!(
        version.trim(),
        format!("weir {}", env!("CARGO_PKG_VERSION"))
    );
    let ok = chroot_ok(r, &["weir", "validate", "-c", "/etc/weir/pipeline.yaml"]);
    assert!(ok.contains(": ok"), "{ok}");
    let ok = chroot_ok(
        r,
        &[
            "weir-collector",
            "validate",
            "-c",
            "/etc/weir/collector.yaml",
        ],
    );
    assert!(ok.contains(": ok"), "{ok}");
    // No systemd in the root: the postinst made the users by hand, the same way.
    let groups = chroot_ok(r, &["id", "-nG", "weir"]);
    assert!(groups.split_whitespace().any(|g| g == "adm"), "{groups}");
    chroot_ok(r, &["id", "weir-collector"]);
    let status = chroot_ok(
        r,
        &[
            "dpkg-query",
            "-W",
            "-f",
            "${Status}",
            "weir",
            "weir-collector",
        ],
    );
    assert_eq!(status, "install ok installedinstall ok installed");

    // Remove keeps the state and the conffiles; purge deletes both.
    std::fs::create_dir_all(r.join("var/lib/weir/spool")).unwrap();
    std::fs::write(r.join("var/lib/weir/spool/kept"), "x").unwrap();
    chroot_ok(r, &["dpkg", "-r", "weir"]);
    assert!(!r.join("usr/bin/weir").exists());
    assert!(
        r.join("var/lib/weir/spool/kept").exists(),
        "remove deleted the state"
    );
    assert!(
        r.join("etc/weir/pipeline.yaml").exists(),
        "remove deleted a conffile"
    );
    chroot_ok(r, &["dpkg", "--purge", "weir", "weir-collector"]);
    assert!(!r.join("var/lib/weir").exists(), "purge kept the state");
    assert!(
        !r.join("etc/weir/pipeline.yaml").exists(),
        "purge kept a conffile"
    );
    assert!(
        !r.join("etc/default/weir").exists(),
        "purge kept a conffile"
    );
}

#[test]
fn packages_build_reproducibly_with_their_files_and_install_in_a_clean_debian_root() {
    let out = tempfile::tempdir().unwrap();
    let (agent, collector) = build(&out.path().join("a"));
    check_agent_package(&agent);
    check_collector_package(&collector);

    let (agent2, collector2) = build(&out.path().join("b"));
    assert_eq!(
        std::fs::read(&agent).unwrap(),
        std::fs::read(&agent2).unwrap(),
        "agent package differs between builds"
    );
    assert_eq!(
        std::fs::read(&collector).unwrap(),
        std::fs::read(&collector2).unwrap(),
        "collector package differs between builds"
    );

    check_units_verify(&agent, &collector);
    check_install_in_a_clean_debian_root(&agent, &collector);
}
