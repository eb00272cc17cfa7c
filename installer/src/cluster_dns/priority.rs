//! The answering thread's place in the queue for a core: real time while
//! its work is light, normal under a flood.
//!
//! On a node the cluster's DNS shares its cores with etcd, the API server,
//! the kubelet and the app, and the tail of its answers is the time its
//! thread waits for a core, not the time it works: in one cluster, one run,
//! the 99th percentile at 20,000 questions a second was 2.4-3.4 ms at normal
//! priority and 0.4-0.8 ms at `SCHED_FIFO` (docs/performance.md). So the
//! thread answers at the lowest real-time priority (ahead of every normal
//! task, behind the kernel's own real-time threads) for as long as it uses
//! less than [`BUSY`] of a core. A flood that makes it work more puts it back
//! among the normal tasks, so that no pod can take a core from the node's
//! kubelet and control plane by asking questions; once its work has stayed
//! under [`CALM`] of a core for [`CALM_FOR`], it is real time again. The
//! kernel's real-time throttling (at most 95 % of each second) stays as the
//! last bound.
//!
//! Where the thread may not be real time (no `CAP_SYS_NICE`; a kernel that
//! schedules real time per cgroup, `CONFIG_RT_GROUP_SCHED`, and gives this
//! process's cgroup no budget, as systemd leaves its services' cgroups on
//! such kernels), it says so once, with the reason, and answers at normal
//! priority.

use std::time::{Duration, Instant};

use thread_priority::{
    NormalThreadSchedulePolicy, RealtimeThreadSchedulePolicy, ThreadPriority,
    ThreadPriorityOsValue, ThreadSchedulePolicy,
};

/// How often the thread's work is measured.
pub const TICK: Duration = Duration::from_millis(500);
/// The share of a core above which (over one [`TICK`]) the thread goes back
/// to normal priority.
pub const BUSY: f64 = 0.5;
/// The share of a core below which, for [`CALM_FOR`], it is real time again.
pub const CALM: f64 = 0.25;
/// How long the work must stay under [`CALM`].
pub const CALM_FOR: Duration = Duration::from_secs(2);

/// Where the thread stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `SCHED_FIFO`, lowest priority.
    Realtime,
    /// `SCHED_OTHER`, nice 0.
    Normal,
}

/// Decides the thread's [`Mode`] from its measured work.
#[derive(Debug)]
pub struct Governor {
    mode: Mode,
    calm_since: Option<Instant>,
}

impl Default for Governor {
    fn default() -> Self {
        Governor::new()
    }
}

impl Governor {
    /// Starts real time.
    pub fn new() -> Governor {
        Governor {
            mode: Mode::Realtime,
            calm_since: None,
        }
    }

    /// The mode now.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Takes the share of a core the thread used over the last tick
    /// (`usage`, 1.0 = a whole core) at `now`; returns the new mode when it
    /// changes.
    pub fn observe(&mut self, usage: f64, now: Instant) -> Option<Mode> {
        match self.mode {
            Mode::Realtime if usage > BUSY => {
                self.mode = Mode::Normal;
                self.calm_since = None;
                Some(Mode::Normal)
            }
            Mode::Realtime => None,
            Mode::Normal if usage >= CALM => {
                self.calm_since = None;
                None
            }
            Mode::Normal => {
                let since = *self.calm_since.get_or_insert(now);
                if now.duration_since(since) >= CALM_FOR {
                    self.mode = Mode::Realtime;
                    self.calm_since = None;
                    Some(Mode::Realtime)
                } else {
                    None
                }
            }
        }
    }
}

/// Puts the calling thread in `mode`.
pub fn apply(mode: Mode) -> Result<(), String> {
    let (priority, policy) = match mode {
        Mode::Realtime => (
            ThreadPriority::Min,
            ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo),
        ),
        Mode::Normal => (
            ThreadPriority::Os(ThreadPriorityOsValue::default()),
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other),
        ),
    };
    thread_priority::unix::set_thread_priority_and_policy(
        thread_priority::unix::thread_native_id(),
        priority,
        policy,
    )
    .map_err(|e| match e {
        thread_priority::Error::OS(code) => std::io::Error::from_raw_os_error(code).to_string(),
        other => other.to_string(),
    })
}

/// The real-time budget of this process's cgroup (`cpu.rt_runtime_us` of
/// the v1 cpu controller), where the kernel schedules real time per
/// cgroup; None where it does not (or it cannot be read).
fn cgroup_rt_budget() -> Option<i64> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroups.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
        controllers.split(',').any(|c| c == "cpu").then_some(path)
    })?;
    ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"]
        .iter()
        .flat_map(|mount| {
            // In a container the mount's root is the container's cgroup.
            [format!("{mount}{path}"), (*mount).to_string()]
        })
        .find_map(|dir| {
            std::fs::read_to_string(format!("{dir}/cpu.rt_runtime_us"))
                .ok()?
                .trim()
                .parse()
                .ok()
        })
}

/// Why real time was refused, in words.
fn refusal(e: &str) -> String {
    match cgroup_rt_budget() {
        Some(0) => format!(
            "{e}: this kernel schedules real time per cgroup and this process's cgroup has no \
             real-time budget (cpu.rt_runtime_us is 0)"
        ),
        _ => e.to_string(),
    }
}

/// The CPU time the calling thread has used.
fn thread_cpu_time() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

/// Governs the scheduling of the thread it runs on (spawn it on the
/// answering thread's current-thread runtime), for ever; `log` gets each
/// change.
pub async fn govern(log: impl Fn(&str)) {
    let mut governor = Governor::new();
    if let Err(e) = apply(Mode::Realtime) {
        log(&format!(
            "answering at normal priority: real time was refused ({}); \
             answers may wait behind the node's other work",
            refusal(&e)
        ));
        return;
    }
    log(&format!(
        "answering at real-time priority while under {:.0} % of a core",
        BUSY * 100.0
    ));
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let mut last = (Instant::now(), thread_cpu_time());
    loop {
        ticks.tick().await;
        let now = (Instant::now(), thread_cpu_time());
        let wall = now.0.duration_since(last.0).as_secs_f64();
        let usage = if wall > 0.0 {
            now.1.saturating_sub(last.1).as_secs_f64() / wall
        } else {
            0.0
        };
        last = now;
        if let Some(mode) = governor.observe(usage, now.0) {
            match apply(mode) {
                Ok(()) if mode == Mode::Normal => log(&format!(
                    "busy ({:.0} % of a core): answering at normal priority until the work \
                     stays under {:.0} % for {} s",
                    usage * 100.0,
                    CALM * 100.0,
                    CALM_FOR.as_secs()
                )),
                Ok(()) => log("calm again: answering at real-time priority"),
                Err(e) => log(&format!(
                    "cannot change the answering thread's priority: {e}"
                )),
            }
        }
    }
}

/// The scheduling policy of thread `tid` of process `pid` as the kernel
/// reports it (`/proc/PID/task/TID/stat` field 41: 0 normal, 1 FIFO).
pub fn policy_of(pid: u32, tid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields count from after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(41 - 3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_makes_it_normal_and_calm_makes_it_real_time_again() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut g = Governor::new();
        assert_eq!(g.mode(), Mode::Realtime);
        assert_eq!(g.observe(0.3, at(500)), None, "light work stays real time");
        assert_eq!(g.observe(0.49, at(1000)), None);
        assert_eq!(g.observe(0.9, at(1500)), Some(Mode::Normal));
        assert_eq!(g.observe(0.9, at(2000)), None);
        // Calm, then busy again before CALM_FOR: the clock starts over.
        assert_eq!(g.observe(0.1, at(2500)), None);
        assert_eq!(g.observe(0.1, at(4000)), None);
        assert_eq!(g.observe(0.3, at(4400)), None, "not calm enough");
        assert_eq!(g.observe(0.1, at(5000)), None);
        assert_eq!(g.observe(0.1, at(6500)), None);
        assert_eq!(g.observe(0.1, at(7000)), Some(Mode::Realtime));
        assert_eq!(g.mode(), Mode::Realtime);
    }

    #[test]
    fn the_policy_of_a_thread_is_read_from_proc() {
        let pid = std::process::id();
        let tid = u32::try_from(nix::unistd::gettid().as_raw()).unwrap();
        // A test thread starts normal (0), whatever the machine.
        assert_eq!(policy_of(pid, tid), Some(0));
        assert_eq!(policy_of(pid, u32::MAX), None);
    }
}
