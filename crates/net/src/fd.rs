//! File descriptors: raise the soft limit to the hard one at start, and
//! split what is left after a reserve between the protocols, so that one
//! listener running out of its share cannot take the descriptors the
//! others (and the database, the logs, outbound delivery) need.

/// Descriptors kept for everything that is not a client connection:
/// storage files, outbound connections' headroom, logs, DNS, HTTP.
pub const RESERVE: u64 = 256;

/// Raise the soft `RLIMIT_NOFILE` to the hard limit; the limit now in force.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: setrlimit reads the struct we own; raising the soft limit
        // up to the hard one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    lim.rlim_cur
}

/// Fit the configured connection caps into `limit - RESERVE` descriptors:
/// unchanged when they fit, otherwise each scaled down in proportion (at
/// least 1). Returns the caps to use.
pub fn share(limit: u64, wanted: &[usize]) -> Vec<usize> {
    let budget = limit.saturating_sub(RESERVE).max(wanted.len() as u64);
    let total: u64 = wanted.iter().map(|&w| w as u64).sum();
    if total <= budget {
        return wanted.to_vec();
    }
    wanted.iter().map(|&w| ((w as u64 * budget / total) as usize).max(1)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_fit_the_descriptor_budget() {
        assert_eq!(share(100_000, &[1000, 1000, 500]), [1000, 1000, 500]);
        // 1,024 descriptors: 768 for clients, shared 2:2:1.
        let s = share(1024, &[1000, 1000, 500]);
        assert_eq!(s, [307, 307, 153]);
        assert!(s.iter().sum::<usize>() as u64 <= 1024 - RESERVE);
        assert_eq!(share(10, &[5, 5]), [1, 1], "never zero");
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let got = raise_nofile_limit();
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(lim.rlim_cur, lim.rlim_max);
        assert_eq!(got, lim.rlim_cur);
    }
}
