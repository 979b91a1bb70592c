//! Paging: a page request read from `esocial.common.v1.PageRequest`, opaque
//! page tokens (after a key for lists, an offset for ranked searches), and
//! cutting a fetched list to a page.

use base64::Engine as _;
use esocial_proto::common::v1 as common;

use crate::Violations;

pub const PAGE_SIZE_DEFAULT: u32 = 50;
pub const PAGE_SIZE_MAX: u32 = 500;

/// Where a page starts: after a key (lists) or at an offset (search).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageStart {
    First,
    AfterKey(String),
    Offset(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub size: u32,
    pub start: PageStart,
}

impl Page {
    /// Rows to fetch: one more than the page, to know if there is a next.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.size) + 1
    }

    /// The key a list page starts after (`None` for the first page); a
    /// token of another method is named as a violation.
    pub fn after<T: std::str::FromStr>(&self, violations: &mut Violations) -> Option<T> {
        match &self.start {
            PageStart::First => None,
            PageStart::AfterKey(key) => {
                let parsed = key.parse().ok();
                if parsed.is_none() {
                    violations.add("page.page_token", "belongs to another method");
                }
                parsed
            }
            PageStart::Offset(_) => {
                violations.add("page.page_token", "belongs to another method");
                None
            }
        }
    }

    /// Where a ranked page starts: an offset of at most `max` (deeper, the
    /// caller should narrow the query).
    pub fn offset(&self, violations: &mut Violations, max: i64) -> i64 {
        match self.start {
            PageStart::First => 0,
            PageStart::Offset(offset) if offset <= max => offset,
            PageStart::Offset(_) => {
                violations.add("page.page_token", format!("goes deeper than {max} results: narrow the query"));
                0
            }
            PageStart::AfterKey(_) => {
                violations.add("page.page_token", "belongs to another method");
                0
            }
        }
    }
}

pub fn page_from_proto(violations: &mut Violations, page: Option<&common::PageRequest>) -> Page {
    let request = page.cloned().unwrap_or_default();
    let size = match request.page_size {
        0 => PAGE_SIZE_DEFAULT,
        size if size > PAGE_SIZE_MAX => {
            violations.add("page.page_size", format!("must be at most {PAGE_SIZE_MAX}"));
            PAGE_SIZE_DEFAULT
        }
        size => size,
    };
    let start = if request.page_token.is_empty() {
        PageStart::First
    } else {
        decode_page_token(&request.page_token).unwrap_or_else(|| {
            violations.add("page.page_token", "is not a token this service issued");
            PageStart::First
        })
    };
    Page { size, start }
}

fn decode_page_token(token: &str) -> Option<PageStart> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    match text.split_once(':')? {
        ("after", code) if !code.is_empty() => Some(PageStart::AfterKey(code.to_owned())),
        ("offset", offset) => offset.parse().ok().filter(|offset| *offset >= 0).map(PageStart::Offset),
        _ => None,
    }
}

pub fn page_token(start: &PageStart) -> String {
    let text = match start {
        PageStart::First => return String::new(),
        PageStart::AfterKey(code) => format!("after:{code}"),
        PageStart::Offset(offset) => format!("offset:{offset}"),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// Cuts a fetched list to the page and returns the next page's token.
pub fn finish_page<T>(
    items: &mut Vec<T>,
    page: &Page,
    next_start: impl FnOnce(&T) -> PageStart,
) -> common::PageResponse {
    let size = usize::try_from(page.size).unwrap_or(usize::MAX);
    if items.len() > size {
        items.truncate(size);
        let next = items.last().map(next_start).unwrap_or(PageStart::First);
        common::PageResponse { next_page_token: page_token(&next) }
    } else {
        common::PageResponse::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_foreign_tokens_are_refused() {
        for start in [PageStart::AfterKey("UA71".to_owned()), PageStart::Offset(150)] {
            let token = page_token(&start);
            assert_eq!(decode_page_token(&token), Some(start));
        }
        assert_eq!(decode_page_token("not-a-token"), None);
        assert_eq!(decode_page_token(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("offset:-5")), None);
    }
}
