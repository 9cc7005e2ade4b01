"""A minimal pymesos (0.3.15) v1 HTTP executor, run by Croupier's agent stand-in tests.

On launchTask it reports TASK_RUNNING, then TASK_FINISHED (the task does nothing), unless the
task's `data` (base64 in pymesos) decodes to b"stay": then it stays RUNNING until killed, which
the executor benchmark uses. killTask reports TASK_KILLED; frameworkMessage echoes the data
back with sendFrameworkMessage. pymesos speaks JSON to $MESOS_AGENT_ENDPOINT.
"""

import logging
import sys
import threading

from pymesos import Executor, MesosExecutorDriver, decode_data


class TinyExecutor(Executor):
    def launchTask(self, driver, task):
        task_id = task["task_id"]
        stay = decode_data(task.get("data", "")) == b"stay" if task.get("data") else False

        def run():
            driver.sendStatusUpdate({"task_id": task_id, "state": "TASK_RUNNING"})
            if not stay:
                driver.sendStatusUpdate(
                    {"task_id": task_id, "state": "TASK_FINISHED", "message": "done by pymesos"}
                )

        threading.Thread(target=run, daemon=True).start()

    def killTask(self, driver, task_id):
        driver.sendStatusUpdate({"task_id": task_id, "state": "TASK_KILLED"})

    def frameworkMessage(self, driver, message):
        driver.sendFrameworkMessage(message)

    def shutdown(self, driver):
        logging.info("shutdown")


def main():
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    driver = MesosExecutorDriver(TinyExecutor(), use_addict=True)
    driver.run()


if __name__ == "__main__":
    main()
