"""The workflow route: ``/api/workflow/execute``.

The request is analysed into a plan (``workflow.plan_for_request``), whose
type is the operation's type; each step is recorded under the workflow. The
fields its steps take are the catalogue's (``operations``).
"""

from flask import Blueprint

from .. import inputs, operations, workflow
from ..catalog import UNPLANNED_WORKFLOW
from ..providers import Task
from ..recording import records_operation

bp = Blueprint("workflow", __name__, url_prefix="/api/workflow")
FIELDS = (operations.DURATION, operations.FRAME_RATE, operations.aspect("1:1"), operations.SEED,
          operations.OUTPUT_FORMAT, operations.VIDEO_FORMAT)


def workflow_type(data: inputs.RequestData) -> str:
    return workflow.plan_for_request()["type"]


@bp.post("/execute")
@records_operation(workflow_type, default=UNPLANNED_WORKFLOW)
def execute():
    plan = workflow.plan_for_request()
    sources = inputs.images(0, workflow.MAX_IMAGES)
    params = {f.name: v for f in FIELDS if (v := f.read()) is not None}
    return Task(plan["type"], inputs.prompt(), params, sources=sources, plan=plan)
