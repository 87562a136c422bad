//! The simulated host's material: programs, libraries, digests, the long-lived processes,
//! and the random numbers that pick among them. Made once, before anything is timed.

const LIB_DIR: &str = "/usr/lib/x86_64-linux-gnu";

/// Long-lived processes, reported as snapshots at the start: (pid, ppid, program). The
/// programs are the first entries of the executable pool; none of them exits.
pub const CORE: &[(u32, u32, &str)] = &[
    (1, 0, "/usr/lib/systemd/systemd"),
    (120, 1, "/usr/lib/systemd/systemd-journald"),
    (131, 1, "/usr/lib/systemd/systemd-udevd"),
    (140, 1, "/usr/bin/dbus-daemon"),
    (151, 1, "/usr/sbin/cron"),
    (152, 1, "/usr/sbin/rsyslogd"),
    (160, 1, "/usr/sbin/sshd"),
    (170, 1, "/usr/bin/containerd"),
    (175, 1, "/usr/sbin/custos"),
    (201, 160, "/usr/sbin/sshd"),
    (202, 201, "/usr/bin/bash"),
    (211, 160, "/usr/sbin/sshd"),
    (212, 211, "/usr/bin/bash"),
    (230, 170, "/usr/bin/containerd-shim-runc-v2"),
];
/// Programs of the long-lived processes: the first entries of [`Pools::exes`].
pub const CORE_EXES: usize = CORE.len();
/// Indices into `CORE` of the processes that start most others.
pub const SPAWNERS: &[usize] = &[0, 4, 10, 12, 13];

const TOOLS: &str = "\
    bash dash ls cat grep sed mawk find xargs git make cc gcc-12 as ld python3.11 perl ssh \
    curl wget tar gzip sort uniq head tail date id ps systemctl journalctl apt-get dpkg sudo \
    run-parts logrotate cargo rustc node docker runc sleep true env which rm cp mv mkdir \
    chmod stat uname hostname ip ss vim less nproc tr cut wc basename dirname readlink \
    mktemp awk du df rsync openssl jq cmp diff patch file";
const LIBS: &str = "\
    libc.so.6 libm.so.6 libpthread.so.0 libdl.so.2 librt.so.1 libz.so.1 libssl.so.3 \
    libcrypto.so.3 libselinux.so.1 libpcre2-8.so.0 libtinfo.so.6 libsystemd.so.0 \
    libgcc_s.so.1 libstdc++.so.6 liblzma.so.5 libzstd.so.1 libcap.so.2 libgcrypt.so.20 \
    libblkid.so.1 libmount.so.1 libuuid.so.1 libexpat.so.1 libffi.so.8 libsqlite3.so.0 \
    libcurl.so.4 libnghttp2.so.14 libidn2.so.0 libkrb5.so.3 libgssapi_krb5.so.2 \
    libkeyutils.so.1 libresolv.so.2 libnss_files.so.2 libnss_systemd.so.2 libaudit.so.1 \
    libpam.so.0 libacl.so.1 libattr.so.1 libbz2.so.1.0 libreadline.so.8 libncursesw.so.6 \
    libxml2.so.2 libicuuc.so.72 libglib-2.0.so.0 libdbus-1.so.3 libudev.so.1 libseccomp.so.2 \
    libapparmor.so.1 libjson-c.so.5 libyaml-0.so.2 libelf.so.1 libbpf.so.1";

/// xorshift64*: fast, deterministic, good enough to pick from pools.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }
    /// True `permille` times in 1000.
    pub fn chance(&mut self, permille: u64) -> bool {
        self.next() % 1000 < permille
    }
    /// 0..n, heavily skewed towards 0 (a few programs and libraries are most of the events).
    pub fn skewed(&mut self, n: usize) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((u * u * u * n as f64) as usize).min(n - 1)
    }
}

/// A program: path, SHA-256.
pub struct Exe {
    pub path: String,
    pub sha: String,
}

/// Paths and digests, made once (not timed).
pub struct Pools {
    /// Libraries; `libs[0]` is libc.
    pub libs: Vec<String>,
    /// Programs; the first `CORE.len()` belong to the long-lived processes.
    pub exes: Vec<Exe>,
    /// What the deny decisions are about: droppers in /tmp and /dev/shm.
    pub bad: Vec<Exe>,
}

fn hex(rng: &mut Rng) -> String {
    (0..4).map(|_| format!("{:016x}", rng.next())).collect()
}

impl Pools {
    pub fn new() -> Pools {
        let mut rng = Rng::new(0x5eed_0001);
        let names: Vec<&str> = LIBS.split_whitespace().collect();
        let mut libs: Vec<String> = names.iter().map(|l| format!("{LIB_DIR}/{l}")).collect();
        for k in 0..1500 {
            let stem = names[k % names.len()].split(".so").next().unwrap_or("lib");
            libs.push(format!("{LIB_DIR}/{stem}-ext{k}.so.{}", k % 7));
        }
        for k in 0..400 {
            libs.push(format!(
                "/usr/lib/python3/dist-packages/pkg{}/_mod{k}.cpython-311-x86_64-linux-gnu.so",
                k / 8
            ));
        }
        let mut exes: Vec<Exe> = Vec::new();
        let mut exe = |path: String, rng: &mut Rng| {
            exes.push(Exe {
                path,
                sha: hex(rng),
            })
        };
        for (_, _, p) in CORE {
            exe((*p).to_owned(), &mut rng);
        }
        for t in TOOLS.split_whitespace() {
            exe(format!("/usr/bin/{t}"), &mut rng);
        }
        for k in 0..420 {
            let path = match k % 4 {
                0 => format!("/usr/lib/pkg{}/helper{k}", k / 10),
                1 => format!("/usr/local/bin/tool{k}"),
                2 => format!("/opt/app/bin/worker{k}"),
                _ => format!("/home/dev/.cargo/bin/dev{k}"),
            };
            exe(path, &mut rng);
        }
        let bad = (0..40)
            .map(|k| Exe {
                path: if k % 2 == 0 {
                    format!("/tmp/.x{k}/kworkerd")
                } else {
                    format!("/dev/shm/.cache{k}")
                },
                sha: hex(&mut rng),
            })
            .collect();
        Pools { libs, exes, bad }
    }
}
