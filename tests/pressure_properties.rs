//! Properties of the pressure gauge over arbitrary signals and configurations: every
//! transition is justified by the thresholds, the sustain gate and the dwell, and no
//! transition the rules demand is missed.

use std::time::Duration;

use membound::clock::{Clock, ManualClock};
use membound::pressure::{adaptive_size, Band, PressureConfig, PressureGauge, PressureLevel};
use proptest::prelude::*;

/// Valid configurations: ascending enters, each exit up to 10 points below its enter
/// and above the lower level's exit.
fn configs() -> impl Strategy<Value = PressureConfig> {
    (
        10u8..=40,
        5u8..=20,
        5u8..=20,
        0u8..=10,
        0u8..=10,
        0u8..=10,
        prop_oneof![Just(0u64), 0u64..=5_000],
        prop_oneof![Just(0u64), 0u64..=5_000],
    )
        .prop_map(|(low, dh, dc, gl, gh, gc, sustain, dwell)| {
            let (high, critical) = (low + dh, low + dh + dc);
            // Exits stay ascending: each gap is below the step between enters.
            let exit = |enter: u8, gap: u8| enter - gap.min(enter - 1);
            let (el, eh, ec) = (
                exit(low, gl),
                exit(high, gh.min(dh - 1)),
                exit(critical, gc.min(dc - 1)),
            );
            PressureConfig::production()
                .with_low(Band::percent(low, el))
                .with_high(Band::percent(high, eh.max(el + 1)))
                .with_critical(Band::percent(critical, ec.max(eh.max(el + 1) + 1)))
                .with_sustain(Duration::from_millis(sustain))
                .with_dwell(Duration::from_millis(dwell))
        })
}

fn band(config: &PressureConfig, level: PressureLevel) -> Band {
    config.band(level).expect("not normal")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn transitions_follow_the_rules(
        config in configs(),
        signal in proptest::collection::vec((0u32..=1200, 0u64..=3_000), 1..300),
    ) {
        prop_assert_eq!(config.validate(), Ok(()));
        let clock = ManualClock::default(); // 1 ms ticks
        let mut gauge = PressureGauge::new(&config, &clock).unwrap();
        let sustain = clock.ticks_for(config.sustain);
        let dwell = clock.ticks_for(config.dwell);
        let mut level = PressureLevel::Normal;
        let mut entered_at = 0u64;
        // (tick, utilization) of every sample so far.
        let mut history: Vec<(u64, f64)> = Vec::new();

        for (permille, dt) in signal {
            clock.advance(dt);
            let now = clock.now();
            let u = f64::from(permille) / 1000.0;
            history.push((now, u));
            let transition = gauge.observe(u, now);
            prop_assert!((0.0..=1.0).contains(&gauge.scale()));
            match transition {
                Some(t) => {
                    prop_assert_eq!(t.from, level);
                    prop_assert_ne!(t.to, t.from);
                    prop_assert_eq!(t.at, now);
                    if t.to > t.from {
                        let enter = band(&config, t.to).enter;
                        prop_assert!(u >= enter);
                        if t.to != PressureLevel::Critical {
                            // At or above `enter` continuously for at least `sustain`.
                            let run_start = history
                                .iter()
                                .rev()
                                .take_while(|(_, v)| *v >= enter)
                                .last()
                                .map(|(at, _)| *at)
                                .unwrap();
                            prop_assert!(now - run_start >= sustain);
                        }
                    } else {
                        prop_assert!(now - entered_at >= dwell, "fell before the dwell");
                        prop_assert!(u < band(&config, t.from).exit);
                        if t.to > PressureLevel::Normal {
                            prop_assert!(u >= band(&config, t.to).exit);
                        }
                    }
                    level = t.to;
                    entered_at = now;
                }
                None => {
                    // Nothing the rules demand was missed.
                    if u >= config.critical.enter {
                        prop_assert_eq!(level, PressureLevel::Critical);
                    }
                    if level > PressureLevel::Normal && now - entered_at >= dwell {
                        prop_assert!(u >= band(&config, level).exit, "missed a fall");
                    }
                    if sustain == 0 {
                        for candidate in [PressureLevel::Low, PressureLevel::High] {
                            if u >= band(&config, candidate).enter {
                                prop_assert!(level >= candidate, "missed a rise");
                            }
                        }
                    }
                }
            }
            prop_assert_eq!(gauge.level(), level);
        }
        let stats = gauge.stats(clock.now());
        prop_assert_eq!(stats.ticks_in.iter().sum::<u64>(), clock.now());
    }

    #[test]
    fn adaptive_sizes_stay_within_one_and_base(base in 1usize.., level in 0usize..4) {
        let level = PressureLevel::from_index(level).unwrap();
        let size = adaptive_size(base, level);
        prop_assert!(size >= 1 && size <= base);
    }
}
