//! The page's `<title>`, safe for any text a person typed.

use leptos::prelude::*;
use leptos_meta::Title;

/// Sets the document title to `text`, shown as text whatever it holds.
///
/// leptos_meta writes the server-rendered title into the `<head>` as it is given, so
/// a job named `</title><script>…` would end the title and run as markup. On the
/// server the text is escaped here; in the browser the title is set through the DOM,
/// which takes it as text, so it is passed unchanged.
#[component]
pub fn PageTitle(#[prop(into)] text: String) -> impl IntoView {
    #[cfg(feature = "ssr")]
    let text = escape_text(&text);
    view! { <Title text /> }
}

/// Escapes text for an HTML text context (`<title>` holds escapable raw text).
#[cfg_attr(not(feature = "ssr"), allow(dead_code))]
pub fn escape_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_a_title_stays_text() {
        assert_eq!(
            escape_text("</title><script>alert(1)</script> & co"),
            "&lt;/title&gt;&lt;script&gt;alert(1)&lt;/script&gt; &amp; co"
        );
        assert_eq!(escape_text("Acme · Full research"), "Acme · Full research");
    }
}
