"""Allure results without pytest, for `fl-hil sweep`: one Allure test per case, with the labels,
parameters, description and attachments the pytest plugin gives a scenario item (the same code
makes them: `flhil.harness.report.allure.label` and `attach_to_allure`, handed a `Sink` in place of
the allure module), written as `*-result.json` and attachment files by allure-python-commons.

A worker collects a case's test into a plain, picklable dict (`collect`); the sweep's driver
writes it (`write`), so a Ray cluster's workers need no shared file system.
"""
from __future__ import annotations

import hashlib
import uuid

from allure_commons import model2
from allure_commons.logger import AllureFileLogger
from allure_commons.types import AttachmentType, LabelType
from allure_commons.utils import represent

FRAMEWORK = "fl-hil sweep"


class _Attach:
    def __init__(self, test):
        self._test = test

    def __call__(self, body, name=None, attachment_type=AttachmentType.TEXT, extension=None):
        data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        self._test["attachments"].append((name, attachment_type.mime_type,
                                          extension or attachment_type.extension, data))

    def file(self, source, name=None, attachment_type=AttachmentType.TEXT, extension=None):
        with open(source, "rb") as f:
            self(f.read(), name, attachment_type, extension)


class _Dynamic:
    def __init__(self, test):
        self._test = test

    def title(self, text):
        self._test["title"] = text

    def epic(self, *names):
        self._test["labels"] += [(LabelType.EPIC, n) for n in names]

    def feature(self, *names):
        self._test["labels"] += [(LabelType.FEATURE, n) for n in names]

    def parameter(self, name, value, excluded=None, mode=None):
        self._test["parameters"].append((name, represent(value)))

    def description_html(self, text):
        self._test["description_html"] = text


class Sink:
    """Stands in for the allure module in `allure_glue`: what it is told lands in `test`."""
    attachment_type = AttachmentType

    def __init__(self):
        self.test = {"title": None, "labels": [], "parameters": [], "description_html": None,
                     "attachments": []}
        self.attach = _Attach(self.test)
        self.dynamic = _Dynamic(self.test)


def collect(spec, record, verdict, parameters, title, description, target, secrets=()):
    """The Allure test of one run, as the plugin makes it: a plain dict."""
    from flhil.harness.report import allure
    sink = Sink()
    allure.label(spec, record, parameters, title, sink=sink)
    allure.attach_to_allure(record, verdict, secrets=secrets, description=description, target=target,
                            sink=sink)
    return sink.test


def history_id(full_name, parameters):
    """One history per case: its name and every parameter that makes it (as allure-pytest does)."""
    text = full_name + "".join("%s=%s;" % p for p in sorted(parameters))
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def write(results_dir, test, full_name, status, message=None, trace=None, start=None, stop=None,
          labels=()):
    """Write one Allure test (a dict from `collect`, or a bare one for a case that never ran) into
    `results_dir`."""
    logger = AllureFileLogger(results_dir)
    attachments = []
    for name, mime, ext, data in test.get("attachments", ()):
        file_name = "%s-attachment.%s" % (uuid.uuid4(), ext)
        logger.report_attached_data(data, file_name)
        attachments.append(model2.Attachment(name=name, source=file_name, type=mime))
    parameters = list(test.get("parameters", ()))
    result = model2.TestResult(
        uuid=str(uuid.uuid4()), name=test.get("title") or full_name, fullName=full_name,
        historyId=history_id(full_name, parameters),
        testCaseId=hashlib.md5(full_name.encode("utf-8")).hexdigest(),
        status=status, stage="finished", descriptionHtml=test.get("description_html"),
        statusDetails=model2.StatusDetails(message=message, trace=trace) if message or trace else None,
        attachments=attachments, start=start, stop=stop,
        parameters=[model2.Parameter(name=n, value=v) for n, v in parameters],
        labels=[model2.Label(name=n, value=v) for n, v in list(test.get("labels", ())) + list(labels)]
        + [model2.Label(name=LabelType.FRAMEWORK, value=FRAMEWORK)])
    logger.report_result(result)
