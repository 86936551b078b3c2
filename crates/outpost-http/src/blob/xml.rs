//! The XML of the Blob REST API the upload paths use: reading a Put Block List body and writing
//! List Blobs' `EnumerationResults` and error bodies. Hand-written: the shapes are tiny and fixed.

use outpost_core::blobs::{BlobPage, BlobProperties, BlockRef};
use outpost_model::Timestamp;
use time::macros::format_description;

/// Escapes text for XML content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let end = rest[at..].find(';')? + at;
        out.push(match &rest[at + 1..end] {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => return None,
        });
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// Parses a Put Block List body:
/// `<?xml …?><BlockList><Latest>id</Latest><Committed>id</Committed><Uncommitted>id</Uncommitted></BlockList>`.
/// Returns `None` when it is not that shape.
pub(crate) fn parse_block_list(body: &str) -> Option<Vec<BlockRef>> {
    let mut rest = body.trim_start_matches('\u{feff}').trim();
    if rest.starts_with("<?xml") {
        rest = rest[rest.find("?>")? + 2..].trim_start();
    }
    rest = rest.strip_prefix("<BlockList")?;
    if rest.starts_with("/>") {
        return Some(Vec::new());
    }
    // Attributes (namespaces) are allowed on the root element.
    rest = rest[rest.find('>')? + 1..].trim_start();
    let mut blocks = Vec::new();
    loop {
        if let Some(after) = rest.strip_prefix("</BlockList>") {
            return after.trim().is_empty().then_some(blocks);
        }
        let open_end = rest.find('>')?;
        let tag = rest.strip_prefix('<')?.get(..open_end - 1)?;
        let make: fn(String) -> BlockRef = match tag {
            "Latest" => BlockRef::Latest,
            "Committed" => BlockRef::Committed,
            "Uncommitted" => BlockRef::Uncommitted,
            _ => return None,
        };
        rest = &rest[open_end + 1..];
        let close = format!("</{tag}>");
        let end = rest.find(&close)?;
        blocks.push(make(unescape(rest[..end].trim())?));
        rest = rest[end + close.len()..].trim_start();
    }
}

/// Formats a time as HTTP dates are (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub(crate) fn http_date(at: Timestamp) -> String {
    let format = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    at.datetime()
        .and_then(|at| at.format(&format).ok())
        .unwrap_or_else(|| "Mon, 01 Jan 0001 00:00:00 GMT".to_owned())
}

/// What List Blobs was asked for, echoed in the result.
pub(crate) struct ListRequest<'a> {
    pub endpoint: String,
    pub container: &'a str,
    pub prefix: &'a str,
    pub marker: Option<&'a str>,
    pub max_results: Option<usize>,
}

/// Renders List Blobs' `EnumerationResults`.
pub(crate) fn enumeration_results(request: &ListRequest<'_>, page: &BlobPage) -> String {
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ServiceEndpoint=\"{}\" ContainerName=\"{}\">",
        escape(&request.endpoint),
        escape(request.container)
    );
    if !request.prefix.is_empty() {
        xml.push_str(&format!("<Prefix>{}</Prefix>", escape(request.prefix)));
    }
    if let Some(marker) = request.marker {
        xml.push_str(&format!("<Marker>{}</Marker>", escape(marker)));
    }
    if let Some(max) = request.max_results {
        xml.push_str(&format!("<MaxResults>{max}</MaxResults>"));
    }
    xml.push_str("<Blobs>");
    for blob in &page.blobs {
        xml.push_str(&blob_element(blob));
    }
    xml.push_str("</Blobs>");
    match &page.next_marker {
        Some(marker) => xml.push_str(&format!("<NextMarker>{}</NextMarker>", escape(marker))),
        None => xml.push_str("<NextMarker />"),
    }
    xml.push_str("</EnumerationResults>");
    xml
}

fn blob_element(blob: &BlobProperties) -> String {
    let optional = |name: &str, value: &Option<String>| match value {
        Some(value) => format!("<{name}>{}</{name}>", escape(value)),
        None => format!("<{name} />"),
    };
    let content = &blob.content;
    format!(
        "<Blob><Name>{}</Name><Properties><Creation-Time>{}</Creation-Time><Last-Modified>{}</Last-Modified>\
         <Etag>{}</Etag><Content-Length>{}</Content-Length>{}{}{}{}{}{}<BlobType>BlockBlob</BlobType>\
         <AccessTier>Hot</AccessTier><AccessTierInferred>true</AccessTierInferred>\
         <LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState>\
         <ServerEncrypted>false</ServerEncrypted></Properties><OrMetadata /></Blob>",
        escape(&blob.name),
        http_date(blob.created),
        http_date(blob.last_modified),
        escape(blob.etag.trim_matches('"')),
        blob.size,
        optional(
            "Content-Type",
            &Some(
                content
                    .content_type
                    .clone()
                    .unwrap_or_else(|| "application/octet-stream".into())
            )
        ),
        optional("Content-Encoding", &content.content_encoding),
        optional("Content-Language", &content.content_language),
        optional("Content-MD5", &content.content_md5),
        optional("Cache-Control", &content.cache_control),
        optional("Content-Disposition", &content.content_disposition),
    )
}

/// Renders Azure Storage's error body.
pub(crate) fn error_body(code: &str, message: &str, detail: Option<&str>) -> String {
    let detail = detail
        .map(|detail| {
            format!(
                "<AuthenticationErrorDetail>{}</AuthenticationErrorDetail>",
                escape(detail)
            )
        })
        .unwrap_or_default();
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{}</Code><Message>{}</Message>{detail}</Error>",
        escape(code),
        escape(message)
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn block_lists_of_both_sdks_parse() {
        // Python: `<?xml version='1.0' encoding='utf-8'?>\n<BlockList>…`; Node: no declaration spacing.
        let python = "<?xml version='1.0' encoding='utf-8'?>\n<BlockList><Latest>QUFB</Latest><Latest>QkJC</Latest></BlockList>";
        assert_eq!(
            parse_block_list(python).unwrap(),
            [BlockRef::Latest("QUFB".into()), BlockRef::Latest("QkJC".into())]
        );
        let mixed = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?><BlockList xmlns=\"x\">\n  <Committed>a+b=</Committed>\n  <Uncommitted> Yw== </Uncommitted></BlockList>\n";
        assert_eq!(
            parse_block_list(mixed).unwrap(),
            [
                BlockRef::Committed("a+b=".into()),
                BlockRef::Uncommitted("Yw==".into())
            ]
        );
        assert_eq!(parse_block_list("<BlockList/>").unwrap(), []);
        for bad in [
            "",
            "<BlockList>",
            "<BlockList><Latest>a</Latest>",
            "<BlockList><Other>a</Other></BlockList>",
            "<BlockList><Latest>a</Committed></BlockList>",
            "<BlockList></BlockList>trailing",
            "<BlockList><Latest>&bogus;</Latest></BlockList>",
        ] {
            assert!(parse_block_list(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn dates_are_http_dates() {
        assert_eq!(
            http_date(Timestamp::from_unix_seconds(1_893_553_445)),
            "Wed, 02 Jan 2030 03:04:05 GMT"
        );
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("a<b&\"c'"), "a&lt;b&amp;&quot;c&apos;");
        assert_eq!(unescape("a&lt;b&amp;").unwrap(), "a<b&");
    }
}
