//! The chart of the last hours: per hour, a bar of deliveries that went out and one of attempts
//! that failed, drawn as inline SVG by the page template from the geometry computed here (so
//! that the template stays markup and escaping stays on).

use crate::ledger::ActivityBucket;

use super::words;

/// The drawing area, in SVG user units; the page scales it to its width.
pub const WIDTH: u32 = 1100;
pub const HEIGHT: u32 = 170;
/// Room under the bars for the hour labels.
const AXIS: u32 = 18;

/// One hour's two bars and its label.
pub struct Column {
    pub x: u32,
    pub bar_width: u32,
    pub delivered_y: u32,
    pub delivered_height: u32,
    pub failed_x: u32,
    pub failed_y: u32,
    pub failed_height: u32,
    /// The hour, e.g. "14:00", shown under every few columns.
    pub label: String,
    pub show_label: bool,
    /// What a pointer over the column shows.
    pub title: String,
}

pub struct Chart {
    pub width: u32,
    pub height: u32,
    pub baseline: u32,
    pub columns: Vec<Column>,
    pub delivered: u64,
    pub failed: u64,
    pub peak: u64,
}

pub fn chart(buckets: &[ActivityBucket]) -> Chart {
    let plot = HEIGHT - AXIS;
    let peak = buckets
        .iter()
        .map(|b| b.delivered.max(b.failed))
        .max()
        .unwrap_or(0)
        .max(1);
    let slot = WIDTH / (buckets.len().max(1) as u32);
    let bar_width = (slot.saturating_sub(4) / 2).max(1);
    // A non-zero count is at least 2 units tall, so one failure among hundreds still shows.
    let scale = |n: u64| {
        if n == 0 {
            0
        } else {
            ((n * u64::from(plot - 4)).div_ceil(peak) as u32).max(2)
        }
    };
    let label_every = (buckets.len() / 8).max(1);
    let columns = buckets
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let x = i as u32 * slot + 2;
            let (dh, fh) = (scale(b.delivered), scale(b.failed));
            let hour = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(b.start)
                .map(|t| t.format("%H:%M").to_string())
                .unwrap_or_default();
            Column {
                x,
                bar_width,
                delivered_y: plot - dh,
                delivered_height: dh,
                failed_x: x + bar_width,
                failed_y: plot - fh,
                failed_height: fh,
                show_label: i % label_every == 0,
                title: format!(
                    "from {}: {} delivered, {} failed",
                    words::exact(b.start),
                    b.delivered,
                    b.failed
                ),
                label: hour,
            }
        })
        .collect();
    Chart {
        width: WIDTH,
        height: HEIGHT,
        baseline: plot,
        columns,
        delivered: buckets.iter().map(|b| b.delivered).sum(),
        failed: buckets.iter().map(|b| b.failed).sum(),
        peak,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(start: i64, delivered: u64, failed: u64) -> ActivityBucket {
        ActivityBucket {
            start,
            delivered,
            failed,
        }
    }

    #[test]
    fn the_busiest_hour_fills_the_plot_and_a_single_failure_still_shows() {
        let c = chart(&[bucket(0, 400, 1), bucket(3_600_000, 0, 0)]);
        let plot = HEIGHT - AXIS;
        assert_eq!(c.columns[0].delivered_height, plot - 4);
        assert_eq!(c.columns[0].delivered_y, 4);
        assert_eq!(c.columns[0].failed_height, 2);
        assert_eq!(c.columns[1].delivered_height, 0);
        assert_eq!((c.delivered, c.failed, c.peak), (400, 1, 400));
        assert_eq!(c.columns[1].label, "01:00");
        assert!(c.columns[0].title.contains("400 delivered, 1 failed"));
    }

    #[test]
    fn columns_stay_inside_the_drawing() {
        let buckets: Vec<_> = (0..24)
            .map(|h| bucket(h * 3_600_000, h as u64, 1))
            .collect();
        let c = chart(&buckets);
        let last = c.columns.last().unwrap();
        assert!(last.failed_x + last.bar_width <= WIDTH);
    }
}
