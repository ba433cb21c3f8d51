"""The cast form of the web pages: a source and a file (existing, uploaded or generated),
targets (nodes, a group or every online node), mode and options."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings

from castray_site.env import parse_size
from dataplane.generator import CONTENT_TYPES
from dataplane.storage import UnsafePath, clean_name
from nodes.models import Node, NodeGroup
from transfers.models import Transfer

FILE_SOURCES = [("existing", "A file in its storage"), ("upload", "Upload a file"), ("generate", "Generate a file")]
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
        if value > settings.CASTRAY_MAX_UPLOAD_SIZE:
            raise forms.ValidationError(f"at most {settings.CASTRAY_MAX_UPLOAD_SIZE} bytes may be generated here")
        return value

    def clean_upload(self) -> Any:
        upload = self.cleaned_data.get("upload")
        if upload is not None and upload.size > settings.CASTRAY_MAX_UPLOAD_SIZE:
            limit = settings.CASTRAY_MAX_UPLOAD_SIZE
            raise forms.ValidationError(f"the file is larger than the limit of {limit} bytes")
        return upload

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        how = data.get("file_source")
        if how == "existing" and not data.get("file_name"):
            self.add_error("file_name", "choose a file from the source's storage")
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
        choice = data.get("target_choice")
        if choice == "nodes" and not data.get("targets"):
            self.add_error("targets", "tick at least one target node")
        if choice == "group" and not data.get("group"):
            self.add_error("group", "choose a group")
        return data
