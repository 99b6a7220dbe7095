"""Validation-phase upload archive: validate the predictions, then zip them flat."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from submission.brats import get_scheme, is_valid_case_id
from submission.io.cases import InputError
from submission.workbench.validate import Finding, Report, check_label_file, validate_output


def validate_predictions(output_dir: Path, labels: str = "2021") -> Report:
    """Check an output folder without its input: names, readability and labels only."""
    scheme = get_scheme(labels)
    report = Report()
    for entry in sorted(Path(output_dir).iterdir()):
        case_id = entry.name.removesuffix(".nii.gz")
        if not entry.is_file() or case_id == entry.name or not is_valid_case_id(case_id):
            report.findings.append(
                Finding(entry.name, "unexpected entry: only <case-id>.nii.gz files may be uploaded")
            )
            continue
        problems = check_label_file(entry, scheme)
        report.findings.append(Finding(entry.name, "; ".join(problems) or None))
    if not report.findings:
        report.findings.append(Finding(str(output_dir), "no prediction to package"))
    report.warnings.append("no --input given: shapes and affines were not checked")
    return report


def package_predictions(
    output_dir: Path, zip_path: Path, labels: str = "2021", input_dir: Path | None = None
) -> Report:
    """Validate ``output_dir`` (against ``input_dir`` when given) and, only if valid, write
    ``zip_path`` with every prediction at the archive's root.

    The archive is written under a temporary name and renamed, and must lie outside the
    output folder (it would otherwise become an unexpected file there). A symbolic link
    in the output folder is an invalid entry, never followed into the archive.
    """
    output_dir, zip_path = Path(output_dir).resolve(), Path(zip_path).resolve()
    if not output_dir.is_dir():
        raise InputError(f"output folder {output_dir} does not exist or is not a folder")
    if zip_path.parent == output_dir:
        raise ValueError(f"write the archive outside the output folder, not in {output_dir}")
    if input_dir is None:
        report = validate_predictions(output_dir, labels)
    else:
        report = validate_output(input_dir, output_dir, labels)
    _refuse_links(report, output_dir)
    if not report.ok:
        return report
    tmp = zip_path.with_name(f".{zip_path.name}.{os.getpid()}.partial")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
            for finding in report.findings:
                archive.write(output_dir / finding.subject, arcname=finding.subject)
        os.replace(tmp, zip_path)
    finally:
        tmp.unlink(missing_ok=True)
    return report


def _refuse_links(report: Report, output_dir: Path) -> None:
    """Make every symbolic link of ``output_dir`` an invalid finding: the archive would
    hold the file it points to, outside the folder that was validated or another case's
    prediction under this case's name."""
    for i, finding in enumerate(report.findings):
        path = output_dir / finding.subject
        if path.parent == output_dir and path.is_symlink():
            report.findings[i] = Finding(
                finding.subject,
                f"a symbolic link to {os.readlink(path)}: only files written in the output "
                "folder are packaged; replace the link by the file itself",
            )
