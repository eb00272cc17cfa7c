//! The pull API: routing, manifests, blobs (with ranges), tags, errors.

use super::*;

pub(super) async fn route(state: &State, request: &Request<Incoming>) -> Response<ResponseBody> {
    let head = match *request.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let mut response = error(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNSUPPORTED",
                "this registry is read-only: only GET and HEAD",
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
    };
    let path = request.uri().path();
    if path == "/v2" || path == "/v2/" {
        let mut response = json_response(StatusCode::OK, Bytes::from_static(b"{}"), head);
        response.headers_mut().insert(
            "Docker-Distribution-API-Version",
            HeaderValue::from_static("registry/2.0"),
        );
        return response;
    }
    let Some((name, kind, reference)) = split_api_path(path) else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint");
    };
    let ns = request.uri().query().and_then(|q| query_param(q, "ns"));
    let Some(repository) = resolve_repository(name, ns.as_deref()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
            &format!("invalid repository name `{name}`"),
        );
    };
    let range = request.headers().get(header::RANGE);
    let result = match kind {
        ApiKind::Manifests => manifest(state, &repository, reference, head).await,
        ApiKind::Blobs => blob(state, reference, range, head).await,
        ApiKind::Tags => Ok(tags(state, name, &repository, request.uri().query(), head)),
    };
    result.unwrap_or_else(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN",
            &format!("failed to read from the layout: {e}"),
        )
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ApiKind {
    Manifests,
    Blobs,
    /// `tags/list`, which `skopeo inspect` asks for.
    Tags,
}

/// `/v2/<name>/manifests/<ref>`, `/v2/<name>/blobs/<digest>` or `/v2/<name>/tags/list`.
pub(super) fn split_api_path(path: &str) -> Option<(&str, ApiKind, &str)> {
    let rest = path.strip_prefix("/v2/")?;
    let (before, reference) = rest.rsplit_once('/')?;
    let (name, kind) = before.rsplit_once('/')?;
    let kind = match kind {
        "manifests" => ApiKind::Manifests,
        "blobs" => ApiKind::Blobs,
        "tags" if reference == "list" => ApiKind::Tags,
        _ => return None,
    };
    (!name.is_empty() && !reference.is_empty()).then_some((name, kind, reference))
}

/// The full `registry/repository` a request names, checked like an image
/// reference so it can never reach outside the layout.
pub(super) fn resolve_repository(name: &str, ns: Option<&str>) -> Option<String> {
    let full = match ns {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => {
            let first = name.split('/').next().unwrap_or_default();
            let is_host = first.contains('.') || first.contains(':') || first == "localhost";
            if is_host && name.contains('/') {
                name.to_string()
            } else {
                format!("docker.io/{name}")
            }
        }
    };
    // Only the host may carry a `:` (its port); a `:` or `@` later would be
    // read as a tag or digest.
    let (host, path) = full.split_once('/')?;
    if full.contains('@') || path.contains(':') || host.contains(['?', '#']) {
        return None;
    }
    let image = ImageRef::parse(&full).ok()?;
    Some(format!("{}/{}", image.registry(), image.repository()))
}

/// A query parameter's value, percent-decoded (Go escapes the `:` of a port).
pub(super) fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| percent_decode(v))?
    })
}

pub(super) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`
pub(super) fn is_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    tag.len() <= 128
        && tag.bytes().next().is_some_and(word)
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-')
}

pub(super) async fn manifest(
    state: &State,
    repository: &str,
    reference: &str,
    head: bool,
) -> io::Result<Response<ResponseBody>> {
    let index = state.index.current();
    let unknown = || {
        error(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            &format!("manifest `{repository}` `{reference}` is not in this bundle"),
        )
    };
    let digest = if reference.contains(':') {
        match reference.parse::<Digest>() {
            Ok(digest) => digest,
            Err(e) => {
                return Ok(error(
                    StatusCode::BAD_REQUEST,
                    "DIGEST_INVALID",
                    &e.to_string(),
                ))
            }
        }
    } else if !is_tag(reference) {
        return Ok(unknown());
    } else {
        match index.by_reference.get(&format!("{repository}:{reference}")) {
            Some(digest) => digest.clone(),
            None => return Ok(unknown()),
        }
    };
    if !index.blobs.contains(&digest) {
        return Ok(unknown());
    }
    let bytes = match read_listed_blob(state.blob_path(&digest)).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(unknown()),
        Err(e) => return Err(e),
    };
    let Some(media_type) = manifest_media_type(&bytes, index.media_types.get(&digest)) else {
        return Ok(unknown());
    };
    let mut response = json_response(StatusCode::OK, Bytes::from(bytes), head);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&media_type).unwrap_or(HeaderValue::from_static(OCI_MANIFEST)),
    );
    headers.insert("Docker-Content-Digest", digest_header(&digest));
    Ok(response)
}

/// A manifest's bytes: a regular file (never through a symbolic link) of at
/// most [`MAX_MANIFEST_BYTES`]; None when it is not such a file.
async fn read_listed_blob(path: PathBuf) -> io::Result<Option<Vec<u8>>> {
    tokio::task::spawn_blocking(move || {
        use std::io::Read as _;
        let file = match open_no_follow(&path) {
            Ok(f) => f,
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(nix::libc::ELOOP) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        if !file.metadata()?.is_file() {
            return Ok(None);
        }
        let mut bytes = Vec::new();
        file.take(MAX_MANIFEST_BYTES + 1).read_to_end(&mut bytes)?;
        Ok((bytes.len() as u64 <= MAX_MANIFEST_BYTES).then_some(bytes))
    })
    .await
    .map_err(io::Error::other)?
}

pub(super) async fn blob(
    state: &State,
    reference: &str,
    range: Option<&HeaderValue>,
    head: bool,
) -> io::Result<Response<ResponseBody>> {
    let digest = match reference.parse::<Digest>() {
        Ok(digest) => digest,
        Err(e) => {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                "DIGEST_INVALID",
                &e.to_string(),
            ))
        }
    };
    let unknown = || {
        error(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            &format!("blob `{digest}` is not in this bundle"),
        )
    };
    if !state.index.current().blobs.contains(&digest) {
        return Ok(unknown());
    }
    let mut file = match tokio::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(state.blob_path(&digest))
        .await
    {
        Ok(file) => file,
        // Missing, or a symbolic link (never followed).
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                || e.raw_os_error() == Some(nix::libc::ELOOP) =>
        {
            return Ok(unknown())
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata().await?;
    if !meta.is_file() {
        return Ok(unknown());
    }
    let size = meta.len();
    let (status, start, len) =
        match range.map(|r| parse_range(r.to_str().unwrap_or_default(), size)) {
            None | Some(RangeRequest::Ignore) => (StatusCode::OK, 0, size),
            Some(RangeRequest::Bytes(start, end)) => {
                (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
            }
            Some(RangeRequest::Unsatisfiable) => {
                let mut response = error(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "RANGE_INVALID",
                    &format!("the range is outside the blob's {size} bytes"),
                );
                response.headers_mut().insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii"),
                );
                return Ok(response);
            }
        };
    let body = if head || len == 0 {
        ResponseBody::Empty
    } else {
        if start > 0 {
            file.seek(SeekFrom::Start(start)).await?;
        }
        ResponseBody::File(FileBody {
            file,
            remaining: len,
            buffer: vec![0; CHUNK_BYTES].into_boxed_slice(),
        })
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert("Docker-Content-Digest", digest_header(&digest));
    if status == StatusCode::PARTIAL_CONTENT {
        let value = format!("bytes {start}-{}/{size}", start + len - 1);
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&value).expect("ascii"),
        );
    }
    Ok(response)
}

/// The repository's tags, sorted, paginated with `n` and `last` as the
/// distribution spec has it.
pub(super) fn tags(
    state: &State,
    name: &str,
    repository: &str,
    query: Option<&str>,
    head: bool,
) -> Response<ResponseBody> {
    let index = state.index.current();
    let mut tags: Vec<&str> = index
        .by_reference
        .keys()
        .filter_map(|key| key.rsplit_once(':'))
        .filter(|(repo, _)| *repo == repository)
        .map(|(_, tag)| tag)
        .collect();
    if tags.is_empty() {
        return error(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            &format!("repository `{repository}` is not in this bundle"),
        );
    }
    tags.sort_unstable();
    let param = |key| query.and_then(|q| query_param(q, key));
    if let Some(last) = param("last") {
        tags.retain(|tag| *tag > last.as_str());
    }
    if let Some(n) = param("n").and_then(|n| n.parse().ok()) {
        tags.truncate(n);
    }
    let body = serde_json::json!({ "name": name, "tags": tags });
    json_response(StatusCode::OK, Bytes::from(body.to_string()), head)
}

/// What a `Range` header asks of a blob of a given size.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum RangeRequest {
    /// Send the whole blob: no single byte range we understand (RFC 9110
    /// lets a server ignore such a header).
    Ignore,
    /// Bytes `start..=end`, already clamped to the blob.
    Bytes(u64, u64),
    /// Nothing of the blob is in the range.
    Unsatisfiable,
}

/// `bytes=a-b`, `bytes=a-` and `bytes=-n`.
pub(super) fn parse_range(value: &str, size: u64) -> RangeRequest {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeRequest::Ignore;
    };
    if spec.contains(',') {
        return RangeRequest::Ignore;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Ignore;
    };
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first.is_empty(), number(first), number(last)) {
        // A suffix: the last n bytes.
        (true, _, Some(0)) => RangeRequest::Unsatisfiable,
        (true, _, Some(n)) if size > 0 => RangeRequest::Bytes(size.saturating_sub(n), size - 1),
        (true, _, Some(_)) => RangeRequest::Unsatisfiable,
        (false, Some(start), _) if start >= size => RangeRequest::Unsatisfiable,
        (false, Some(start), None) if last.is_empty() => RangeRequest::Bytes(start, size - 1),
        (false, Some(start), Some(end)) if end >= start => {
            RangeRequest::Bytes(start, end.min(size - 1))
        }
        _ => RangeRequest::Ignore,
    }
}

pub(super) fn digest_header(digest: &Digest) -> HeaderValue {
    HeaderValue::from_str(&digest.to_string()).expect("a digest is ascii")
}

pub(super) fn json_response(
    status: StatusCode,
    bytes: Bytes,
    head: bool,
) -> Response<ResponseBody> {
    let len = bytes.len();
    let body = if head {
        ResponseBody::Empty
    } else {
        ResponseBody::Full(Full::new(bytes))
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    response
}

/// An OCI distribution error response.
pub(super) fn error(status: StatusCode, code: &str, message: &str) -> Response<ResponseBody> {
    let body = serde_json::json!({ "errors": [{ "code": code, "message": message }] });
    json_response(status, Bytes::from(body.to_string()), false)
}
