//! A OneRoster export as it arrives: a folder or a zip of CSV files. Files are found by
//! name in any letter case, in the folder itself or, in a zip, in the shallowest folder
//! that has them (exports are often zipped with their folder), and opened for streaming:
//! a zip entry is decompressed as it is read, never held whole.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use zip::ZipArchive;

use super::SisError;

pub struct Export {
    path: PathBuf,
    files: Files,
}

enum Files {
    /// File paths by lower-case name.
    Dir(HashMap<String, PathBuf>),
    /// Entry names by lower-case base name, shallowest first.
    Zip {
        archive: ZipArchive<BufReader<File>>,
        entries: HashMap<String, Vec<String>>,
    },
}

impl Export {
    /// Opens the folder or zip at `path` and lists its files.
    pub fn open(path: &Path) -> Result<Self, SisError> {
        let open_err = |source| SisError::Open {
            path: path.to_path_buf(),
            source,
        };
        let files = if path.is_dir() {
            let mut files = HashMap::new();
            for entry in std::fs::read_dir(path).map_err(open_err)? {
                let entry = entry.map_err(open_err)?;
                let name = entry.file_name().to_string_lossy().to_lowercase();
                files.insert(name, entry.path());
            }
            Files::Dir(files)
        } else {
            let file = File::open(path).map_err(open_err)?;
            let archive =
                ZipArchive::new(BufReader::new(file)).map_err(|source| SisError::Zip {
                    path: path.to_path_buf(),
                    source,
                })?;
            let mut entries: HashMap<String, Vec<String>> = HashMap::new();
            for name in archive.file_names() {
                let Ok(name) = name else { continue };
                if name.ends_with('/') {
                    continue;
                }
                let base = name.rsplit('/').next().unwrap_or(&name).to_lowercase();
                entries.entry(base).or_default().push(name.into_owned());
            }
            for names in entries.values_mut() {
                names.sort_by_key(|n| (n.matches('/').count(), n.clone()));
            }
            Files::Zip { archive, entries }
        };
        Ok(Self {
            path: path.to_path_buf(),
            files,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the export has a file called `name` (any letter case).
    pub fn has(&self, name: &str) -> bool {
        let key = name.to_lowercase();
        match &self.files {
            Files::Dir(files) => files.contains_key(&key),
            Files::Zip { entries, .. } => entries.contains_key(&key),
        }
    }

    /// The file called `name`, ready to stream, or `None` if the export has none. Two
    /// files of that name at the same depth of a zip are refused rather than guessed.
    pub fn open_file(&mut self, name: &str) -> Result<Option<Box<dyn Read + '_>>, SisError> {
        let key = name.to_lowercase();
        let path = self.path.clone();
        match &mut self.files {
            Files::Dir(files) => {
                let Some(file) = files.get(&key) else {
                    return Ok(None);
                };
                let file = File::open(file).map_err(|source| SisError::Open {
                    path: file.clone(),
                    source,
                })?;
                Ok(Some(Box::new(BufReader::with_capacity(1 << 20, file))))
            }
            Files::Zip { archive, entries } => {
                let Some(names) = entries.get(&key) else {
                    return Ok(None);
                };
                let depth = |n: &String| n.matches('/').count();
                if names.len() > 1 && depth(&names[0]) == depth(&names[1]) {
                    return Err(SisError::NotOneRoster {
                        path,
                        reason: format!(
                            "the zip holds {name} twice ({} and {}): zip one export at a time",
                            names[0], names[1]
                        ),
                    });
                }
                let entry = archive
                    .by_name(&names[0])
                    .map_err(|source| SisError::Zip { path, source })?;
                Ok(Some(Box::new(entry)))
            }
        }
    }
}
