"""The cast form of the web pages: a source and what it sends (a file or directory in its
storage, an upload, a generated file, or a URL it fetches first), targets (nodes, a group or
every online node), mode and options."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.utils import timezone

from castray_site.env import format_size, parse_size
from dataplane.generator import CONTENT_TYPES
from dataplane.storage import UnsafePath, clean_name, resolve_in
from nodes.files import StorageError, local_root
from nodes.models import Node, NodeGroup
from transfers.models import Transfer
from transfers.services import CastError, resolve_targets
from transfers.services.origins import origin_check

FILE_SOURCES = [
    ("existing", "A file or directory in its storage"),
    ("upload", "Upload a file"),
    ("generate", "Generate a file"),
    ("url", "Fetch from a URL"),
]
TARGET_CHOICES = [("nodes", "Chosen nodes"), ("group", "A group"), ("all", "All online nodes")]
MODES = [
    (Transfer.Mode.TCP, "TCP relay tree"),
    (Transfer.Mode.UDP, "Reliable UDP"),
    (Transfer.Mode.OBJECT_STORE, "Ray object store"),
]
PRESETS = ["1KB", "10KB", "100KB", "1MB", "10MB", "100MB"]


class CastForm(forms.Form):
    source = forms.ModelChoiceField(queryset=Node.objects.enabled(), empty_label=None, to_field_name="name")
    file_source = forms.ChoiceField(choices=FILE_SOURCES, initial="existing", widget=forms.RadioSelect)
    file_name = forms.CharField(required=False, max_length=1024, label="File")
    upload = forms.FileField(required=False)
    gen_size = forms.CharField(required=False, initial="10MB", label="Size", help_text="e.g. 10MB, 1.5GiB, 4096")
    gen_content = forms.ChoiceField(
        choices=[(c, c) for c in CONTENT_TYPES], initial="random", required=False, label="Content"
    )
    gen_name = forms.CharField(required=False, max_length=200, label="Name", help_text="Empty: a name from the size.")
    origin = forms.CharField(
        required=False, max_length=4096, label="URL", help_text="http://, https:// or s3://bucket/key (or prefix/)"
    )
    origin_name = forms.CharField(
        required=False, max_length=1024, label="Name in the source's storage", help_text="Empty: the URL's last part."
    )
    mirror = forms.BooleanField(required=False, label="Mirror a directory")
    overwrite = forms.BooleanField(required=False, label="Replace a file of that name")
    target_choice = forms.ChoiceField(choices=TARGET_CHOICES, initial="nodes", widget=forms.RadioSelect)
    targets = forms.ModelMultipleChoiceField(
        queryset=Node.objects.enabled(),
        required=False,
        to_field_name="name",
        widget=forms.CheckboxSelectMultiple,
    )
    group = forms.ModelChoiceField(queryset=NodeGroup.objects.all(), required=False, to_field_name="name")
    mode = forms.ChoiceField(choices=MODES, initial=Transfer.Mode.TCP)
    fan_out = forms.IntegerField(min_value=0, max_value=64, initial=0, help_text="Children per relay; 0: default.")
    priority = forms.IntegerField(min_value=-100, max_value=100, initial=0)
    dest_name = forms.CharField(required=False, max_length=1024, label="Name at the targets")

    def clean_gen_size(self) -> int | None:
        text = self.cleaned_data.get("gen_size", "").strip()
        if self.data.get("file_source") != "generate":
            return None
        try:
            value = parse_size(text)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None
        limit = settings.CASTRAY_MAX_UPLOAD_SIZE
        if value > limit:
            raise forms.ValidationError(f"at most {format_size(limit)} may be generated here")
        return value

    def clean_upload(self) -> Any:
        upload = self.cleaned_data.get("upload")
        if upload is not None and upload.size > settings.CASTRAY_MAX_UPLOAD_SIZE:
            limit = format_size(settings.CASTRAY_MAX_UPLOAD_SIZE)
            raise forms.ValidationError(f"the file is larger than the limit of {limit}")
        return upload

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        how = data.get("file_source")
        if how == "existing" and not data.get("file_name"):
            self.add_error("file_name", "choose a file or directory from the source's storage")
        if how == "url":
            self._check_origin(data)
        if how == "upload" and not data.get("upload"):
            self.add_error("upload", "choose a file to upload")
        if how == "generate" and not data.get("gen_content"):
            self.add_error("gen_content", "choose the content: text, random or pattern")
        for field in ("file_name", "gen_name"):
            if data.get(field):
                try:
                    data[field] = clean_name(data[field])
                except UnsafePath as exc:
                    self.add_error(field, str(exc))
        if data.get("dest_name"):
            try:
                data["dest_name"] = clean_name(data["dest_name"])
            except UnsafePath as exc:
                self.add_error("dest_name", str(exc))
        choice = data.get("target_choice")
        if choice == "nodes" and not data.get("targets"):
            self.add_error("targets", "tick at least one target node")
        if choice == "group" and not data.get("group"):
            self.add_error("group", "choose a group")
        # Everything the cast needs is checked before a file is generated or stored, so a
        # refused form leaves nothing behind (a second try would otherwise find the name taken).
        source = data.get("source")
        if source is not None and not self.errors:
            try:
                resolve_targets(source=source, **self.chosen_targets())
            except CastError as exc:
                self.add_error(_TARGET_FIELDS.get(exc.field, "targets"), exc.message)
        if source is not None and how in ("generate", "upload") and not self.errors:
            data["new_name"] = self._new_name(data)
            self._check_name_free(source, data["new_name"], "gen_name" if how == "generate" else "upload")
        return data

    def _check_origin(self, data: dict[str, Any]) -> None:
        """The URL and the name it is fetched to, as the API checks them; recorded without credentials."""
        if not data.get("origin"):
            self.add_error("origin", "give an http://, https:// or s3:// URL for the source to fetch")
            return
        try:
            data["origin"], data["origin_name"] = origin_check(
                url=data["origin"], file_name=data.get("origin_name", "")
            )
        except CastError as exc:
            self.add_error("origin" if exc.field == "origin" else "origin_name", exc.message)

    def chosen_targets(self) -> dict[str, Any]:
        """The form's target choice as resolve_targets and transfer_create take it."""
        data = self.cleaned_data
        choice = data.get("target_choice")
        return {
            "targets": list(data.get("targets") or []) if choice == "nodes" else None,
            "group": data.get("group") if choice == "group" else None,
            "broadcast": choice == "all",
        }

    @staticmethod
    def _new_name(data: dict[str, Any]) -> str:
        if data["file_source"] == "upload":
            # Browsers send a bare name; anything with directories keeps only its last part.
            return (data["upload"].name or "upload").replace("\\", "/").rsplit("/", 1)[-1]
        stamp = f"{timezone.now():%Y%m%d-%H%M%S}"
        return data["gen_name"] or f"generated-{data['gen_content']}-{data['gen_size']}-{stamp}.bin"

    def _check_name_free(self, source: Node, name: str, field: str) -> None:
        try:
            path = resolve_in(local_root(source), name)
        except StorageError:
            return  # storage on another host: storing the file reports that
        except UnsafePath as exc:
            self.add_error(field, str(exc))
            return
        if path.is_dir():
            self.add_error(field, f"{name} is a directory in {source.name}'s storage; choose another name")
        elif path.exists() and not self.cleaned_data.get("overwrite"):
            self.add_error(
                field, f"{name} already exists in {source.name}'s storage; tick “Replace” or choose another name"
            )


# Where resolve_targets names what to fix, the form's field for it.
_TARGET_FIELDS = {"targets": "targets", "group": "group", "broadcast": "target_choice"}
