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

    def skip(self):
        self.skipped = True

    def interrupt(self):
        self.interrupted = True

    def nextjob(self):
        self.job_no += 1

    def begin(self, job="(unknown)"):
        self.skipped = self.interrupted = self.stopping_generation = False
        self.job_no = self.job_count = 0
        self.job = job
