"""The composer's sub-forms: A/B variants B-E and language versions.

Two formsets owned by the campaign form (campaigns.forms), so that the
shares, the test group and every content are checked together with the
campaign by the one rule (campaigns.variants) before anything is saved. A
post without them (an older form, a script) keeps the stored rows.
"""

from typing import Any

from django import forms

from campaigns import variants as variant_rules
from campaigns.models import Campaign

VARIANT_CHOICES = [(key, key) for key in "BCDE"]
LANGUAGE_VARIANTS = [(key, f"Variant {key}") for key in "ABCDE"]


class _DataField(forms.JSONField):
    """A JSON object; empty shows empty (not "null")."""

    def prepare_value(self, value: Any) -> Any:
        if value in (None, {}, ""):
            return ""
        return super().prepare_value(value)


class VariantForm(forms.Form):
    key = forms.ChoiceField(choices=VARIANT_CHOICES, label="Variant")
    split_percent = forms.IntegerField(
        min_value=1,
        max_value=99,
        label="Share (%)",
        widget=forms.NumberInput(attrs={"class": "kpns-share"}),
    )
    title = forms.CharField(max_length=200)
    body = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    url = forms.URLField(required=False, max_length=1000, label="URL")
    image = forms.URLField(required=False, max_length=1000, label="Image URL")
    data = _DataField(required=False, widget=forms.Textarea(attrs={"rows": 1}))

    def clean_data(self) -> Any:
        value = self.cleaned_data.get("data")
        if value in (None, ""):
            return {}
        if not isinstance(value, dict):
            raise forms.ValidationError("Must be a JSON object.")
        return value


class LanguageForm(forms.Form):
    variant = forms.ChoiceField(choices=LANGUAGE_VARIANTS, initial="A")
    locale = forms.CharField(
        max_length=variant_rules.MAX_LOCALE,
        help_text="fr serves fr-CA and fr-BE too",
        widget=forms.TextInput(attrs={"size": 6}),
    )
    title = forms.CharField(max_length=200)
    body = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Empty: the variant's own.",
    )
    url = forms.URLField(required=False, max_length=1000, label="URL")
    image = forms.URLField(required=False, max_length=1000, label="Image URL")


VariantFormSet = forms.formset_factory(
    VariantForm, extra=0, can_delete=True, max_num=4, validate_max=True
)
LanguageFormSet = forms.formset_factory(
    LanguageForm, extra=0, can_delete=True, max_num=100, validate_max=True
)


def content_formsets(
    campaign: Campaign, data: Any = None
) -> tuple[forms.BaseFormSet, forms.BaseFormSet]:  # type: ignore[type-arg]
    """The variants and languages sub-forms, bound to `data` if given."""
    return (
        VariantFormSet(
            data,
            prefix="variants",
            initial=variant_rules.stored_variants(campaign),
        ),
        LanguageFormSet(
            data,
            prefix="languages",
            initial=variant_rules.stored_languages(campaign),
        ),
    )


def posted(formset: forms.BaseFormSet) -> bool:  # type: ignore[type-arg]
    """Did the post carry this sub-form (its management form)?"""
    return formset.is_bound and f"{formset.prefix}-TOTAL_FORMS" in formset.data


def rows(formset: forms.BaseFormSet) -> list[dict[str, Any]]:  # type: ignore[type-arg]
    """The kept rows of a valid formset, as the service takes them."""
    return [
        {name: value for name, value in form.cleaned_data.items() if name != "DELETE"}
        for form in formset.forms
        if form.cleaned_data and not form.cleaned_data.get("DELETE")
    ]
