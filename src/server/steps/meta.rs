//! What a page says about itself — its title, description and language — read from
//! every place pages put them, each field taken from the first source in a fixed order
//! that has it, and which source that was kept with it.

use serde_json::Value;

/// Where a title may come from, first choice first.
pub const TITLE_SOURCES: &[&str] = &["title", "og:title", "twitter:title", "json-ld", "h1"];
/// Where a description may come from, first choice first.
pub const DESCRIPTION_SOURCES: &[&str] =
    &["meta", "og:description", "twitter:description", "itemprop", "http-equiv", "json-ld"];
/// Where a language may come from, first choice first.
pub const LANGUAGE_SOURCES: &[&str] = &["html-lang", "og:locale", "content-language", "header", "json-ld"];

/// The most of one JSON-LD block read; a larger one is skipped.
pub const MAX_JSON_LD_BYTES: usize = 256 * 1024;
/// JSON-LD blocks read on one page; later ones are skipped.
pub const MAX_JSON_LD_BLOCKS: usize = 16;
/// Nodes of one block looked at (objects, array entries, `@graph` members).
const MAX_JSON_LD_NODES: usize = 256;

/// One field's value so far and where it came from.
#[derive(Debug)]
pub struct Pick {
    order: &'static [&'static str],
    value: Option<String>,
    source: Option<&'static str>,
}

impl Pick {
    pub fn new(order: &'static [&'static str]) -> Self {
        Self { order, value: None, source: None }
    }

    fn rank(&self, source: &str) -> usize {
        self.order.iter().position(|s| *s == source).unwrap_or(usize::MAX)
    }

    /// Whether a value from `source` could still be kept: its text need not even be
    /// gathered otherwise.
    pub fn wants(&self, source: &str) -> bool {
        self.source.is_none_or(|current| self.rank(source) < self.rank(current))
    }

    /// Keeps `value` if it is not empty and `source` comes before the current one's
    /// (a second value from the same source loses: the first on the page wins).
    pub fn offer(&mut self, source: &'static str, value: Option<String>) {
        let Some(value) = value.filter(|v| !v.is_empty()) else { return };
        if self.wants(source) {
            self.value = Some(value);
            self.source = Some(source);
        }
    }

    pub fn into_parts(self) -> (Option<String>, Option<&'static str>) {
        (self.value, self.source)
    }
}

/// What JSON-LD blocks say, the first of each in document order.
#[derive(Debug, Default, PartialEq)]
pub struct JsonLd {
    pub headline: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub in_language: Option<String>,
}

impl JsonLd {
    /// Reads one `<script type="application/ld+json">` block: an object, an array of
    /// them or an `@graph`. A block that is too big or not JSON is skipped.
    pub fn read(&mut self, text: &str) {
        if text.len() > MAX_JSON_LD_BYTES {
            return;
        }
        let Ok(value) = serde_json::from_str::<Value>(text.trim()) else { return };
        let mut stack = vec![&value];
        let mut seen = 0;
        while let Some(node) = stack.pop() {
            seen += 1;
            if seen > MAX_JSON_LD_NODES {
                break;
            }
            match node {
                // In reverse, so the first entry is looked at first.
                Value::Array(items) => stack.extend(items.iter().rev()),
                Value::Object(map) => {
                    let text = |key: &str| map.get(key).and_then(Value::as_str).map(decode_entities);
                    let keep = |slot: &mut Option<String>, v: Option<String>| {
                        if slot.is_none() {
                            *slot = v.filter(|s| !s.trim().is_empty());
                        }
                    };
                    keep(&mut self.headline, text("headline"));
                    keep(&mut self.name, text("name"));
                    keep(&mut self.description, text("description"));
                    keep(&mut self.in_language, text("inLanguage"));
                    if let Some(graph) = map.get("@graph") {
                        stack.push(graph);
                    }
                }
                _ => {}
            }
        }
    }
}

/// JSON-LD text as pages write it, often with HTML entities (`Joe&#039;s`, `&amp;`):
/// decoded as the HTML parser decodes text.
fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let fragment = scraper::Html::parse_fragment(&format!("<p>{}</p>", s.replace('<', "&lt;")));
    fragment.root_element().text().collect()
}

/// A language as a BCP 47 tag (`en_US` → `en-US`, `DE-de` → `de-DE`, `zh_hant_tw` →
/// `zh-Hant-TW`); the first of a list (`Content-Language: en, de`); `None` for what is
/// not a tag.
pub fn bcp47(raw: &str) -> Option<String> {
    let first = raw.split(',').next()?.split(';').next()?.trim();
    if first.is_empty() || first.len() > 35 {
        return None;
    }
    let parts: Vec<&str> = first.split(['-', '_']).collect();
    let well_formed =
        parts.iter().all(|p| !p.is_empty() && p.len() <= 8 && p.chars().all(|c| c.is_ascii_alphanumeric()));
    let language = parts[0];
    if !well_formed || !(2..=8).contains(&language.len()) || !language.chars().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    let mut tag = language.to_ascii_lowercase();
    for part in &parts[1..] {
        tag.push('-');
        let alpha = part.chars().all(|c| c.is_ascii_alphabetic());
        match part.len() {
            2 if alpha => tag.push_str(&part.to_ascii_uppercase()),
            4 if alpha => {
                let lower = part.to_ascii_lowercase();
                tag.push_str(&lower[..1].to_ascii_uppercase());
                tag.push_str(&lower[1..]);
            }
            _ => tag.push_str(&part.to_ascii_lowercase()),
        }
    }
    Some(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_written_as_bcp47() {
        for (raw, want) in [
            ("en", Some("en")),
            ("en_US", Some("en-US")),
            ("DE-de", Some("de-DE")),
            ("zh_hant_tw", Some("zh-Hant-TW")),
            ("es-419", Some("es-419")),
            ("en, de;q=0.5", Some("en")),
            (" fr-CA ", Some("fr-CA")),
            ("", None),
            ("english please", None),
            ("1en", None),
            ("en--US", None),
            ("<script>", None),
        ] {
            assert_eq!(bcp47(raw).as_deref(), want, "{raw:?}");
        }
    }

    #[test]
    fn json_ld_in_every_shape_and_broken_blocks_skipped() {
        let mut ld = JsonLd::default();
        ld.read(r#"{"@context": "https://schema.org", "broken": "#);
        assert_eq!(ld, JsonLd::default(), "a broken block says nothing");
        ld.read(&format!(r#"{{"name": "{}"}}"#, "x".repeat(MAX_JSON_LD_BYTES)));
        assert_eq!(ld, JsonLd::default(), "a block over the bound is not read");
        ld.read(
            r#"[{"@type": "Organization", "name": "Acme"}, {"@type": "WebPage", "headline": "Joe&#039;s &amp; <b>"}]"#,
        );
        ld.read(
            r#"{"@graph": [{"@type": "WebSite", "name": "Later", "description": "What Acme does", "inLanguage": "en-GB"}]}"#,
        );
        assert_eq!(
            ld,
            JsonLd {
                headline: Some("Joe's & <b>".into()),
                name: Some("Acme".into()),
                description: Some("What Acme does".into()),
                in_language: Some("en-GB".into()),
            }
        );
    }

    #[test]
    fn the_first_source_in_order_wins_whatever_the_page_order() {
        let mut pick = Pick::new(TITLE_SOURCES);
        pick.offer("h1", Some("Heading".into()));
        pick.offer("og:title", Some("Open Graph".into()));
        pick.offer("title", Some(String::new()));
        pick.offer("twitter:title", Some("Twitter".into()));
        pick.offer("og:title", Some("A second og:title".into()));
        assert_eq!(pick.into_parts(), (Some("Open Graph".into()), Some("og:title")));
    }
}
