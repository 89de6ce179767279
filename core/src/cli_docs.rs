//! Man pages and shell completions generated from a binary's clap
//! definition, so that the packaged documentation cannot drift from the
//! arguments the binary accepts. The binaries expose this as a hidden
//! `generate` subcommand that `scripts/package` runs.

use std::io;
use std::path::{Path, PathBuf};

use clap_complete::Shell;

/// Writes `out/man/<bin>.1` plus one `<bin>-<subcommand>.1` per visible
/// subcommand, and `out/completions/{<bin>.bash, _<bin>, <bin>.fish}`;
/// returns the files written.
pub fn generate(mut cmd: clap::Command, out: &Path) -> io::Result<Vec<PathBuf>> {
    cmd.build();
    let name = cmd.get_name().to_owned();
    let man = out.join("man");
    let comp = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&comp)?;
    let mut written = Vec::new();

    let mut write = |path: PathBuf, bytes: Vec<u8>| -> io::Result<()> {
        std::fs::write(&path, bytes)?;
        written.push(path);
        Ok(())
    };
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    write(man.join(format!("{name}.1")), page)?;
    // clap's own `help` subcommand gets no page: `<bin>(1)` covers it.
    let documented = |s: &&clap::Command| !s.is_hide_set() && s.get_name() != "help";
    for sub in cmd.get_subcommands().filter(documented) {
        let full = format!("{name}-{}", sub.get_name());
        // clap takes names as &'static str (without its `string` feature);
        // this runs once per page in a short-lived process.
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        let version = leak(cmd.get_version().unwrap_or_default().to_owned());
        let sub = sub.clone().name(leak(full.clone())).version(version);
        let mut page = Vec::new();
        clap_mangen::Man::new(sub).render(&mut page)?;
        write(man.join(format!("{full}.1")), page)?;
    }
    for (shell, file) in [
        (Shell::Bash, format!("{name}.bash")),
        (Shell::Zsh, format!("_{name}")),
        (Shell::Fish, format!("{name}.fish")),
    ] {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cmd, &name, &mut script);
        write(comp.join(file), script)?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli() -> clap::Command {
        clap::Command::new("demo")
            .version("1.2.3")
            .about("A demo.")
            .subcommand(
                clap::Command::new("run")
                    .about("Run it.")
                    .arg(clap::Arg::new("config").long("config").short('c')),
            )
            .subcommand(clap::Command::new("secret").hide(true))
    }

    #[test]
    fn writes_a_page_per_visible_subcommand_and_three_completions() {
        let dir = tempfile::tempdir().unwrap();
        let files = generate(cli(), dir.path()).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "man/demo.1",
                "man/demo-run.1",
                "completions/demo.bash",
                "completions/_demo",
                "completions/demo.fish"
            ]
        );
        let run = std::fs::read_to_string(dir.path().join("man/demo-run.1")).unwrap();
        assert!(run.contains("config"), "{run}");
        let bash = std::fs::read_to_string(dir.path().join("completions/demo.bash")).unwrap();
        assert!(bash.contains("--config"), "{bash}");
    }
}
