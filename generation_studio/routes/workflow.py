"""The workflow route: ``/api/workflow/execute``.

The request is analysed into a plan (``workflow.plan_for_request``), whose
type is the operation's type; each step is recorded under the workflow.
"""

from flask import Blueprint

from .. import inputs, workflow
from ..catalog import UNPLANNED_WORKFLOW
from ..recording import records_operation
from . import params

bp = Blueprint("workflow", __name__, url_prefix="/api/workflow")


def workflow_type(data: inputs.RequestData) -> str:
    return workflow.plan_for_request()["type"]


@bp.post("/execute")
@records_operation(workflow_type, default=UNPLANNED_WORKFLOW)
def execute():
    plan = workflow.plan_for_request()
    images = inputs.images(0, workflow.MAX_IMAGES)
    request_params = {**params.video(), **params.aspect_ratio("1:1"), **params.seed(),
                      **params.output_format()}
    return params.task(plan["type"], inputs.prompt(), request_params, images=images, plan=plan)
