//! The video metadata catalogue (`metadata/video_metadata.csv`).

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;

use chrono::NaiveDate;

use crate::error::LakeError;

pub const METADATA_HEADER: [&str; 6] = [
    "video_id",
    "title",
    "genre",
    "creator",
    "duration_s",
    "release_date",
];

#[derive(Debug, Clone, PartialEq)]
pub struct VideoMetadata {
    pub video_id: String,
    pub title: String,
    pub genre: String,
    pub creator: String,
    pub duration_s: f64,
    pub release_date: NaiveDate,
}

/// Reads and validates the catalogue: exact header, unique non-empty ids,
/// positive finite durations, `YYYY-MM-DD` dates. The first bad line is reported.
pub fn read_metadata_file(path: &Path) -> Result<Vec<VideoMetadata>, LakeError> {
    let file = std::fs::File::open(path).map_err(|source| LakeError::Io {
        path: path.display().to_string(),
        source,
    })?;
    read_metadata(file).map_err(|error| match error {
        LakeError::Metadata { line, reason, .. } => LakeError::Metadata {
            path: path.display().to_string(),
            line,
            reason,
        },
        other => other,
    })
}

pub fn read_metadata(input: impl Read) -> Result<Vec<VideoMetadata>, LakeError> {
    let bad = |line: u64, reason: String| LakeError::Metadata {
        path: "<input>".to_string(),
        line,
        reason,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(input);
    let header = reader.headers().map_err(|e| bad(1, e.to_string()))?.clone();
    if header.iter().ne(METADATA_HEADER) {
        return Err(bad(
            1,
            format!(
                "header must be `{}`, got `{}`",
                METADATA_HEADER.join(","),
                header.iter().collect::<Vec<_>>().join(",")
            ),
        ));
    }
    let mut videos = Vec::new();
    let mut seen = HashSet::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            bad(line, e.to_string())
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let field = |i: usize| record.get(i).unwrap_or("").to_string();
        let video_id = field(0);
        if video_id.is_empty() {
            return Err(bad(line, "empty video_id".into()));
        }
        if !seen.insert(video_id.clone()) {
            return Err(bad(line, format!("duplicate video_id {video_id:?}")));
        }
        let duration_s: f64 = field(4)
            .parse()
            .ok()
            .filter(|d: &f64| d.is_finite() && *d > 0.0)
            .ok_or_else(|| {
                bad(
                    line,
                    format!("duration_s must be a positive number, got {:?}", field(4)),
                )
            })?;
        let release_date = iso_date(&field(5)).ok_or_else(|| {
            bad(
                line,
                format!("release_date must be YYYY-MM-DD, got {:?}", field(5)),
            )
        })?;
        videos.push(VideoMetadata {
            video_id,
            title: field(1),
            genre: field(2),
            creator: field(3),
            duration_s,
            release_date,
        });
    }
    if videos.is_empty() {
        return Err(bad(1, "no videos listed".into()));
    }
    Ok(videos)
}

/// A date written exactly `YYYY-MM-DD`: chrono's `%Y-%m-%d` alone also takes
/// `2024-1-5` or `+2024-01-05`.
fn iso_date(text: &str) -> Option<NaiveDate> {
    let shape = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    shape
        .then(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "video_id,title,genre,creator,duration_s,release_date\n";

    #[test]
    fn reads_quoted_titles() {
        let csv = format!("{HEADER}v1,\"Live, Part 2\",music,Ada TV,210.5,2024-01-31\n");
        let videos = read_metadata(csv.as_bytes()).unwrap();
        assert_eq!(videos[0].title, "Live, Part 2");
        assert_eq!(videos[0].duration_s, 210.5);
    }

    #[test]
    fn names_the_line_and_the_problem() {
        let csv = format!("{HEADER}v1,a,music,c,10,2024-01-31\nv2,b,music,c,-3,2024-01-31\n");
        let error = read_metadata(csv.as_bytes()).unwrap_err().to_string();
        assert!(
            error.contains("line 3") && error.contains("duration_s"),
            "{error}"
        );
        for date in [
            "31/01/2024",
            "2024-1-5",
            "24-01-05",
            "+2024-01-05",
            "2024-02-30",
        ] {
            let csv = format!("{HEADER}v1,a,music,c,10,{date}\n");
            let error = read_metadata(csv.as_bytes()).unwrap_err().to_string();
            assert!(error.contains("release_date"), "{date}: {error}");
        }
        let csv = format!("{HEADER}v1,a,music,c,10,2024-01-31\nv1,a,music,c,10,2024-01-31\n");
        let error = read_metadata(csv.as_bytes()).unwrap_err().to_string();
        assert!(error.contains("duplicate video_id"), "{error}");
        let error = read_metadata("id,title\n".as_bytes())
            .unwrap_err()
            .to_string();
        assert!(error.contains("header"), "{error}");
    }

    #[test]
    fn the_shipped_catalogue_is_valid_and_large_enough() {
        let path = std::path::PathBuf::from(
            std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"),
        )
        .join("../metadata/video_metadata.csv");
        let videos = read_metadata_file(&path).unwrap();
        assert!(videos.len() >= 500);
        let genres: HashSet<_> = videos.iter().map(|v| v.genre.as_str()).collect();
        let creators: HashSet<_> = videos.iter().map(|v| v.creator.as_str()).collect();
        assert!(genres.len() >= 5 && creators.len() >= 20);
    }
}
