//! The progress bar.

use leptos::prelude::*;

use crate::model::Job;

/// A progress bar with its numbers in words, so the bar is never the only signal.
/// Finished items (completed or failed) count as done.
#[component]
pub fn Progress(#[prop(into)] job: Signal<Job>) -> impl IntoView {
    let numbers = Memo::new(move |_| job.with(|j| Numbers::of(j.done(), j.total)));
    // The fill takes the state's colour; the words next to the bar carry the meaning.
    let class = move || format!("progress-block progress-{}", job.with(|j| j.phase().css()));
    view! {
        <div class=class>
            <div
                class="progress"
                role="progressbar"
                aria-label="Progress"
                aria-valuemin="0"
                aria-valuemax="100"
                aria-valuenow=move || numbers.with(|n| n.rounded.to_string())
            >
                <div class="progress-fill" style=move || numbers.with(|n| format!("width: {}%", n.width))></div>
            </div>
            <p class="progress-text">{move || numbers.with(|n| n.words.clone())}</p>
        </div>
    }
}

/// What the bar shows, in whole numbers: formatting floats would put their code in the
/// browser's bundle for three numbers.
#[derive(Clone, Debug, PartialEq)]
struct Numbers {
    /// The share done in percent, rounded to the nearest (for assistive technology).
    rounded: i64,
    /// The fill's width in percent with one decimal, rounded to the nearest tenth.
    width: String,
    /// "N of M done (P%)", P floored so that 100% means every item is done.
    words: String,
}

impl Numbers {
    fn of(done: i64, total: i64) -> Self {
        // An empty job shows a full bar, as a finished one.
        let (part, whole) = if total <= 0 { (1, 1) } else { (done.clamp(0, total), total) };
        let tenths = (part * 2000 + whole) / (2 * whole);
        Self {
            rounded: (part * 200 + whole) / (2 * whole),
            width: format!("{}.{}", tenths / 10, tenths % 10),
            words: format!("{done} of {total} done ({}%)", part * 100 / whole),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Numbers;

    #[test]
    fn numbers_round_the_bar_and_floor_the_words() {
        // (done, total) → (rounded, width, words)
        let cases = [
            ((1, 3), (33, "33.3", "1 of 3 done (33%)")),
            ((2, 3), (67, "66.7", "2 of 3 done (66%)")),
            // 99.96%: the bar and the number rounded up, the words not yet 100%.
            ((9_996, 10_000), (100, "100.0", "9996 of 10000 done (99%)")),
            ((0, 7), (0, "0.0", "0 of 7 done (0%)")),
            ((7, 7), (100, "100.0", "7 of 7 done (100%)")),
            ((0, 0), (100, "100.0", "0 of 0 done (100%)")),
        ];
        for ((done, total), (rounded, width, words)) in cases {
            let n = Numbers::of(done, total);
            assert_eq!((n.rounded, n.width.as_str(), n.words.as_str()), (rounded, width, words), "{done} of {total}");
        }
    }
}
