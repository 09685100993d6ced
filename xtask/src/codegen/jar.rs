//! Apache Kafka's message schemas, read from the pinned jars on Maven Central.
//!
//! A jar is taken from the Kafka distribution that `scripts/kafka.sh fetch`
//! gets from Maven Central with Maven (the e2e setup's), copied once into
//! `~/.cache/fjord-codegen/`, its
//! SHA-256 checked against the pin below (`sha256sum`), and its
//! `common/message/*.json` or `common/metadata/*.json` entries are read
//! straight from the zip file: no Kafka file is ever copied into the tree.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

/// The Kafka release whose schemas the generated code follows.
pub const KAFKA_VERSION: &str = "4.3.1";

/// A pinned artifact (org.apache.kafka:<artifact>:KAFKA_VERSION) and the
/// SHA-256 of the jar (the one Maven Central publishes beside it).
pub struct Jar {
    pub artifact: &'static str,
    pub sha256: &'static str,
}

pub const CLIENTS: Jar = Jar {
    artifact: "kafka-clients",
    sha256: "52501b7b47510c66f898871adaf6d2968ab7246561d44ced43643a8a587f0b36",
};

pub const METADATA: Jar = Jar {
    artifact: "kafka-metadata",
    sha256: "4d73a96c6474a4ebdd67a1cee14da1a94cfd6bb9e6e252685ba5667d8ab7f898",
};

/// The jars whose classes define Kafka's broker and topic configs
/// (`AbstractKafkaConfig.CONFIG_DEF` gathers definitions from each of these
/// modules; `LogConfig` is in kafka-storage), read by `codegen`'s
/// `KafkaConfigs` program (see `configs`).
pub const CONFIG_JARS: &[Jar] = &[
    CLIENTS,
    Jar {
        artifact: "kafka-server",
        sha256: "01d736599ec3b0cdbb0480c15219170b28cdae189785e7f0c6f1f26e528eaebc",
    },
    Jar {
        artifact: "kafka-server-common",
        sha256: "d7c719f749579a399011f0df7414de8a78f10f074a6122caa550fdb141351575",
    },
    Jar {
        artifact: "kafka-storage",
        sha256: "97e3facddd2914a58f28ec91ef35f8da69963eab3651196e97f487924f6dac98",
    },
    Jar {
        artifact: "kafka-raft",
        sha256: "46abbf89806dd22d848e997cdfb1431524cab4ec88e38a7d2806e20b24a70609",
    },
    Jar {
        artifact: "kafka-group-coordinator",
        sha256: "4ab56d002e1624185c874199e9e0ffb243dbeb9f68b4d0cadf48ce2f617a1126",
    },
    Jar {
        artifact: "kafka-group-coordinator-api",
        sha256: "d81bc1a3739ff6c9b21815baae00022306342a16d3d94e6a2621201b9980a30d",
    },
    Jar {
        artifact: "kafka-coordinator-common",
        sha256: "66a86b8c89718216ffa72fe4e44b9d1bdf3472e4cb9200c36a0742a25febbdba",
    },
    Jar {
        artifact: "kafka-transaction-coordinator",
        sha256: "c64aaa2a88d8fd382c4800204872917686e542043c7916c9e8797d939d8eb313",
    },
    Jar {
        artifact: "kafka-share-coordinator",
        sha256: "8ceeed7346127e652ea5c650b217890aaff14919f967d27fadce420745bd3066",
    },
];

/// The e2e setup's Kafka distribution: the third-party jars the Kafka
/// classes need at run time (logging, Jackson) are taken from there.
pub fn e2e_libs() -> Result<PathBuf> {
    Ok(home()?.join(format!(".cache/fjord-e2e/kafka-{KAFKA_VERSION}/libs")))
}

impl Jar {
    fn file_name(&self) -> String {
        format!("{}-{KAFKA_VERSION}.jar", self.artifact)
    }

    /// The jar in [`cache_dir`], put there first if no copy with the pinned
    /// hash is there: copied from the e2e setup's Kafka distribution
    /// (fetched first if missing).
    pub fn path(&self) -> Result<PathBuf> {
        let dir = cache_dir()?;
        let path = dir.join(self.file_name());
        if path.exists() && sha256(&path)? == self.sha256 {
            return Ok(path);
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let partial = dir.join(format!("{}.part", self.file_name()));
        let e2e = e2e_libs()?.join(self.file_name());
        if !e2e.exists() {
            // The Kafka distribution's jars come from Maven Central through
            // Maven itself (scripts/kafka.sh, as the e2e setup does).
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka.sh");
            eprintln!("codegen: fetching the Kafka {KAFKA_VERSION} jars (scripts/kafka.sh fetch)");
            let status = Command::new("bash")
                .arg(&script)
                .arg("fetch")
                .status()
                .context("cannot run scripts/kafka.sh")?;
            ensure!(status.success(), "scripts/kafka.sh fetch failed ({status})");
            ensure!(e2e.exists(), "{} missing after the fetch", e2e.display());
        }
        std::fs::copy(&e2e, &partial)?;
        let got = sha256(&partial)?;
        if got != self.sha256 {
            bail!(
                "{} has SHA-256 {got}, expected the pinned {}",
                partial.display(),
                self.sha256,
            );
        }
        std::fs::rename(&partial, &path)?;
        Ok(path)
    }
}

fn home() -> Result<PathBuf> {
    Ok(PathBuf::from(
        std::env::var("HOME").context("HOME is not set")?,
    ))
}

/// `~/.cache/fjord-codegen/kafka-<version>`: the pinned jars.
pub fn cache_dir() -> Result<PathBuf> {
    Ok(home()?.join(format!(".cache/fjord-codegen/kafka-{KAFKA_VERSION}")))
}

fn sha256(path: &Path) -> Result<String> {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .context("cannot run sha256sum")?;
    ensure!(out.status.success(), "sha256sum {} failed", path.display());
    let text = String::from_utf8(out.stdout)?;
    Ok(text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}

fn u16_at(b: &[u8], at: usize) -> Result<usize> {
    let s = b.get(at..at + 2).context("zip: truncated")?;
    Ok(usize::from(u16::from_le_bytes([s[0], s[1]])))
}

fn u32_at(b: &[u8], at: usize) -> Result<usize> {
    let s = b.get(at..at + 4).context("zip: truncated")?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
}

/// The entries of the zip file at `path` whose names start with `prefix` and
/// end with `.json`, by name (stored or deflated entries; a jar has no
/// others).
pub fn json_entries(path: &Path, prefix: &str) -> Result<BTreeMap<String, String>> {
    let zip = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    // End of central directory: signature 0x06054b50, within the last 64 KiB + 22 bytes.
    let eocd = (0..zip.len().saturating_sub(21))
        .rev()
        .take(65_557)
        .find(|&i| zip[i..].starts_with(&[0x50, 0x4b, 0x05, 0x06]))
        .context("zip: no end of central directory")?;
    let entries = u16_at(&zip, eocd + 10)?;
    let mut at = u32_at(&zip, eocd + 16)?;
    let mut out = BTreeMap::new();
    for _ in 0..entries {
        ensure!(
            u32_at(&zip, at)? == 0x0201_4b50,
            "zip: bad central directory entry"
        );
        let method = u16_at(&zip, at + 10)?;
        let compressed = u32_at(&zip, at + 20)?;
        let name_len = u16_at(&zip, at + 28)?;
        let extra_len = u16_at(&zip, at + 30)?;
        let comment_len = u16_at(&zip, at + 32)?;
        let local = u32_at(&zip, at + 42)?;
        let name = std::str::from_utf8(zip.get(at + 46..at + 46 + name_len).context("zip")?)?;
        at += 46 + name_len + extra_len + comment_len;
        if !(name.starts_with(prefix) && name.ends_with(".json")) {
            continue;
        }
        ensure!(u32_at(&zip, local)? == 0x0403_4b50, "zip: bad local header");
        let data_at = local + 30 + u16_at(&zip, local + 26)? + u16_at(&zip, local + 28)?;
        let data = zip
            .get(data_at..data_at + compressed)
            .context("zip: truncated entry")?;
        let mut text = String::new();
        match method {
            0 => text.push_str(std::str::from_utf8(data)?),
            8 => {
                flate2::read::DeflateDecoder::new(data).read_to_string(&mut text)?;
            }
            m => bail!("zip: {name} uses compression method {m}"),
        }
        out.insert(name.to_owned(), text);
    }
    Ok(out)
}
