import time


class State:
    skipped = False
    interrupted = False
    stopping_generation = False
    job = ""
    job_no = 0
    job_count = 0
    sampling_step = 0
    sampling_steps = 0
    textinfo = None
    job_timestamp = "0"
    time_start = None
    processing_has_refined_job_count = False

    def skip(self):
        self.skipped = True

    def interrupt(self):
        self.interrupted = True

    def nextjob(self):
        self.job_no += 1
        self.sampling_step = 0

    def begin(self, job="(unknown)"):
        # modules/shared_state.py State.begin (A1111 1.10.1, Forge 2): the job count is -1
        # until process_images_inner sets it to n_iter (hires fix doubles it)
        self.skipped = self.interrupted = self.stopping_generation = False
        self.job_count = -1
        self.processing_has_refined_job_count = False
        self.job_no = 0
        self.sampling_step = self.sampling_steps = 0
        self.job = job
        self.time_start = time.time()

    def end(self):
        # State.end (A1111 1.10.1 shared_state.py:129-135): the API calls it after each request
        self.job = ""
        self.job_count = 0

    def dict(self):
        # State.dict (shared_state.py:95-108): the `state` of GET /sdapi/v1/progress
        return {
            "skipped": self.skipped,
            "interrupted": self.interrupted,
            "stopping_generation": self.stopping_generation,
            "job": self.job,
            "job_count": self.job_count,
            "job_timestamp": self.job_timestamp,
            "job_no": self.job_no,
            "sampling_step": self.sampling_step,
            "sampling_steps": self.sampling_steps,
        }
